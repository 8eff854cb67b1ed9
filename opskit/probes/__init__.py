"""Send all of a step's probes to the host in one exec, and split the answer.

The sections are fenced by a per-run random token that no file on the host
contains, so a probe that prints a log or a config can never fake a fence:

    <fence> begin <probe-id>
    ...probe output...
    <fence> end <probe-id> <exit status>
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from opskit.shell import token


@dataclass(frozen=True)
class Section:
    output: str
    exit_status: int


def new_fence() -> str:
    return "OPSKIT-" + secrets.token_hex(8)


def build_batch(snippets: list[tuple[str, str]], fence: str) -> str:
    """One sh script running each (probe id, snippet) in a subshell between fences."""
    token(fence)
    parts = []
    for probe_id, snippet in snippets:
        token(probe_id)
        parts.append(
            f"echo '{fence} begin {probe_id}'\n"
            f"( {snippet}\n) </dev/null\n"
            f"echo; echo '{fence} end {probe_id}' $?\n"
        )
    return "".join(parts)


def split_batch(stdout: str, fence: str) -> dict[str, Section]:
    """Pure: fenced stdout → {probe id: Section}. A probe whose end fence is missing
    (the batch was cut short) is absent from the result."""
    sections: dict[str, Section] = {}
    current: str | None = None
    lines: list[str] = []
    for line in stdout.split("\n"):
        if line.startswith(fence + " begin "):
            current, lines = line[len(fence) + 7:].strip(), []
        elif line.startswith(fence + " end ") and current is not None:
            fields = line[len(fence) + 5:].split()
            status = int(fields[1]) if len(fields) > 1 and fields[1].lstrip("-").isdigit() else -1
            # build_batch prints one newline before the end fence so unterminated output stays apart.
            text = "\n".join(lines)
            if text.endswith("\n"):
                text = text[:-1]
            sections[current] = Section(text, status)
            current = None
        elif current is not None:
            lines.append(line)
    return sections
