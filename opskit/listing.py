"""Rows of a listing in the format asked for: `--format table|json|yaml|csv` (WP-CLI style).

`render(rows, columns, fmt)` is all there is: rows are plain dicts, `columns` picks and orders
the keys (a missing key is an empty cell / null). table is rich's, with no colour when piped;
json and yaml keep values' types (lists stay lists); csv has a header line and joins lists with
spaces. Commands that list things (`inventory show`, `list`, `show`, `runs`) share it.
"""

from __future__ import annotations

import csv
import io
import json

FORMATS = ("table", "json", "yaml", "csv")


def render(rows: list[dict], columns: list[str], fmt: str) -> str:
    """The rows as text in `fmt` (one of FORMATS), ending with a newline."""
    picked = [{column: row.get(column) for column in columns} for row in rows]
    if fmt == "json":
        return json.dumps(picked, indent=2, ensure_ascii=False, default=str) + "\n"
    if fmt == "yaml":
        import yaml

        return yaml.safe_dump(picked, sort_keys=False, allow_unicode=True, default_flow_style=False) if picked else "[]\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        for row in picked:
            writer.writerow([_cell(row[column]) for column in columns])
        return out.getvalue()
    if fmt == "table":
        return _table(picked, columns)
    raise ValueError(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return " ".join(_cell(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{key}: {_cell(item)}" for key, item in value.items())
    return str(value)


def _table(rows: list[dict], columns: list[str]) -> str:
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=True, box=None, pad_edge=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(_cell(row[column]) for column in columns))
    out = io.StringIO()
    Console(file=out, width=200, no_color=True, highlight=False, color_system=None).print(table)
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines()) + "\n"
