"""The fleet view of a diagnosis: each host's verdict, the hosts × causes table, and the report
files (`opskit run diagnose --all --report FILE.html` or `FILE.md`).

Everything here renders the document `--json` prints (opskit.report.json_document); it decides
nothing: a host's verdict is what its diagnose rule step said (`verdict`: `healthy` or the top
cause), or its run status when it did not get that far (unreachable, failed).

    verdict_of(steps)               -> "upstream-down" | "healthy" | None   (from a host's steps)
    fleet(document)                 -> {"hosts": N, "verdicts": {...}, "causes": {cause: [hosts]}}
    render_html(document)           -> one self-contained HTML page (inline styles, no fetches)
    render_markdown(document)       -> Markdown for a ticket
    write_report(path, document)    by the suffix: .html/.htm or .md/.markdown
"""

from __future__ import annotations

import html
import time
from pathlib import Path

from opskit.errors import InputError

CAUSES = ("upstream-down", "firewall", "overload", "fpm-timeout", "kill-script", "gateway-timeout", "application",
          "cdn", "dns", "timeout-chain")
SUFFIXES = {".html": "html", ".htm": "html", ".md": "markdown", ".markdown": "markdown"}
COLOURS = {"healthy": "#1a7f37", "critical": "#8b0000", "error": "#cf222e", "warning": "#9a6700", "info": "#0969da",
           "failed": "#cf222e", "unreachable": "#cf222e"}


def report_format(path: str) -> str:
    """'html' or 'markdown' for a --report path; InputError for another suffix."""
    kind = SUFFIXES.get(Path(path).suffix.lower())
    if kind is None:
        raise InputError(f"--report {path}: write FILE.html (a self-contained page) or FILE.md (Markdown)")
    return kind


def diagnosis_of(steps: list[dict]) -> dict | None:
    """The value of the diagnose rule step that concluded (the full one, else the public-only one)."""
    for step in steps:
        value = step.get("value")
        if step.get("kind") == "rule" and isinstance(value, dict) and "verdict" in value and "ranked" in value \
                and value.get("verdict"):
            return value
    return None


def verdict_of(steps: list[dict]) -> str | None:
    found = diagnosis_of(steps)
    return found["verdict"] if found else None


def host_verdict(doc: dict) -> str:
    """A host's verdict in a --json document's hosts entry."""
    found = diagnosis_of(doc.get("steps", []))
    if found:
        return found["verdict"]
    return doc.get("status") or "unknown"


def fleet(document: dict) -> dict:
    hosts = document.get("hosts", {})
    verdicts: dict[str, int] = {}
    causes: dict[str, list[str]] = {}
    for name, doc in hosts.items():
        verdict = host_verdict(doc)
        verdicts[verdict] = verdicts.get(verdict, 0) + 1
        for finding in doc.get("findings", []):
            if finding["cause"] in CAUSES and finding["severity"] != "info" and name not in causes.get(finding["cause"], []):
                causes.setdefault(finding["cause"], []).append(name)
    return {"hosts": len(hosts), "verdicts": verdicts, "causes": causes}


def matrix(document: dict) -> tuple[list[str], list[tuple[str, str, dict[str, str]]]]:
    """(the causes seen, [(host, verdict, {cause: worst severity})]) for the hosts × causes table."""
    order = {"critical": 3, "error": 2, "warning": 1, "info": 0}
    rows, seen = [], set()
    for name, doc in document.get("hosts", {}).items():
        cells: dict[str, str] = {}
        for finding in doc.get("findings", []):
            cause = finding["cause"]
            if cause in CAUSES and order[finding["severity"]] >= order.get(cells.get(cause, "info"), 0):
                cells[cause] = finding["severity"]
                seen.add(cause)
        rows.append((name, host_verdict(doc), cells))
    return [c for c in CAUSES if c in seen], rows


# -- terminal -----------------------------------------------------------------------------------

def causes_table(document: dict):
    """rich Table: one row per host, its verdict, then a column per cause seen."""
    from rich.table import Table

    causes, rows = matrix(document)
    table = Table(title="hosts × causes (most likely cause first)", title_justify="left")
    table.add_column("host")
    table.add_column("verdict")
    for cause in causes:
        table.add_column(cause)
    style = {"critical": "bold red", "error": "red", "warning": "yellow", "info": "cyan"}
    for name, verdict, cells in rows:
        shown = f"[green]{verdict}[/]" if verdict == "healthy" else f"[bold]{verdict}[/]"
        table.add_row(name, shown, *[f"[{style[cells[c]]}]{cells[c]}[/]" if c in cells else "" for c in causes])
    counts = fleet(document)
    table.caption = ", ".join(f"{n} {v}" for v, n in sorted(counts["verdicts"].items(), key=lambda kv: -kv[1]))
    return table


# -- files --------------------------------------------------------------------------------------

def _e(text) -> str:
    return html.escape("" if text is None else str(text), quote=True)


def render_html(document: dict) -> str:
    counts = fleet(document)
    causes, rows = matrix(document)
    generated = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    parts = [
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<title>opskit {_e(document.get('playbook'))} — run {_e(document.get('run_id'))}</title>",
        "<style>body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:2em;color:#1f2328}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #d0d7de;padding:4px 8px;text-align:left;"
        "vertical-align:top}th{background:#f6f8fa}.ev{font:12px ui-monospace,Menlo,monospace;color:#57606a;"
        "white-space:pre-wrap;word-break:break-all}.host{border-top:2px solid #d0d7de;margin-top:2em;padding-top:1em}"
        ".sev{font-weight:600}.advice{margin:.3em 0 .8em 1em}</style></head><body>",
        f"<h1>Why the sites answer 502: {counts['hosts']} host{'s' if counts['hosts'] != 1 else ''}</h1>",
        f"<p>opskit run <b>{_e(document.get('playbook'))}</b>, run {_e(document.get('run_id'))}, written {generated}.</p>",
        "<h2>Fleet</h2><table><tr><th>verdict</th><th>hosts</th></tr>",
    ]
    for verdict, n in sorted(counts["verdicts"].items(), key=lambda kv: -kv[1]):
        parts.append(f"<tr><td style=\"color:{COLOURS.get(verdict, '#1f2328')}\">{_e(verdict)}</td><td>{n}</td></tr>")
    parts.append("</table><table><tr><th>cause</th><th>hosts with it</th></tr>")
    for cause in CAUSES:
        if cause in counts["causes"]:
            parts.append(f"<tr><td>{_e(cause)}</td><td>{len(counts['causes'][cause])}: "
                         f"{_e(', '.join(counts['causes'][cause]))}</td></tr>")
    parts.append("</table><h2>Hosts × causes</h2><table><tr><th>host</th><th>verdict</th>"
                 + "".join(f"<th>{_e(c)}</th>" for c in causes) + "</tr>")
    for name, verdict, cells in rows:
        parts.append(f"<tr><td><a href=\"#host-{_e(name)}\">{_e(name)}</a></td>"
                     f"<td style=\"color:{COLOURS.get(verdict, '#1f2328')}\">{_e(verdict)}</td>"
                     + "".join(f"<td style=\"color:{COLOURS[cells[c]]}\">{_e(cells[c])}</td>" if c in cells else "<td></td>"
                               for c in causes) + "</tr>")
    parts.append("</table>")
    for name, doc in document.get("hosts", {}).items():
        verdict = host_verdict(doc)
        found = diagnosis_of(doc.get("steps", []))
        parts.append(f"<section class=\"host\" id=\"host-{_e(name)}\"><h2>{_e(name)}: "
                     f"<span style=\"color:{COLOURS.get(verdict, '#1f2328')}\">{_e(verdict)}</span></h2>")
        if found and not found.get("ssh", True):
            parts.append("<p><b>Public side only</b>: no SSH access to this host; its logs, php-fpm and firewall "
                         "were not inspected.</p>")
        if doc.get("error"):
            parts.append(f"<p style=\"color:#cf222e\">{_e(doc['error'])}</p>")
        for finding in doc.get("findings", []):
            colour = COLOURS.get(finding["severity"], "#1f2328")
            parts.append(f"<p><span class=\"sev\" style=\"color:{colour}\">{_e(finding['severity'])}</span> "
                         f"<code>{_e(finding['cause'])}</code> {_e(finding['summary'])}</p>")
            if finding.get("evidence"):
                parts.append("<div class=\"ev\">" + "\n".join(_e(e) for e in finding["evidence"]) + "</div>")
            if finding.get("advice"):
                parts.append(f"<p class=\"advice\">→ {_e(finding['advice'])}</p>")
        parts.append("</section>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _md(text) -> str:
    return ("" if text is None else str(text)).replace("|", "\\|").replace("\n", " ")


def render_markdown(document: dict) -> str:
    counts = fleet(document)
    causes, rows = matrix(document)
    out = [f"# Why the sites answer 502: {counts['hosts']} host{'s' if counts['hosts'] != 1 else ''}", "",
           f"opskit run **{document.get('playbook')}**, run `{document.get('run_id')}`.", "",
           "| verdict | hosts |", "|---|---|"]
    out += [f"| {_md(v)} | {n} |" for v, n in sorted(counts["verdicts"].items(), key=lambda kv: -kv[1])]
    out += ["", "| host | verdict | " + " | ".join(causes) + " |", "|---|---|" + "---|" * len(causes)]
    out += [f"| {_md(name)} | {_md(verdict)} | " + " | ".join(cells.get(c, "") for c in causes) + " |"
            for name, verdict, cells in rows]
    for name, doc in document.get("hosts", {}).items():
        found = diagnosis_of(doc.get("steps", []))
        out += ["", f"## {name}: {host_verdict(doc)}", ""]
        if found and not found.get("ssh", True):
            out += ["*Public side only: no SSH access to this host; its logs, php-fpm and firewall were not inspected.*", ""]
        if doc.get("error"):
            out += [f"**error:** {doc['error']}", ""]
        for finding in doc.get("findings", []):
            out.append(f"- **{finding['severity']}** `{finding['cause']}` {finding['summary']}")
            if finding.get("evidence"):
                out.append("  ```")
                out += [f"  {e}" for e in finding["evidence"]]
                out.append("  ```")
            if finding.get("advice"):
                out.append(f"  → {finding['advice']}")
    return "\n".join(out) + "\n"


def write_report(path: str, document: dict) -> None:
    text = render_html(document) if report_format(path) == "html" else render_markdown(document)
    target = Path(path).expanduser()
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(target)
