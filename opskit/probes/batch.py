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
    # a newline first: a login banner printed without one must not swallow the first fence
    parts = ["echo\n"]
    for probe_id, snippet in snippets:
        token(probe_id)
        parts.append(
            f"echo '{fence} begin {probe_id}'\n"
            f"( {snippet}\n) </dev/null; s=$?\n"
            f"echo; echo '{fence} end {probe_id}' $s\n"
        )
    return "".join(parts)


def split_batch(stdout: str, fence: str) -> dict[str, Section]:
    """Pure: fenced stdout → {probe id: Section}. A probe whose end fence is missing
    (the batch was cut short) is absent from the result."""
    sections: dict[str, Section] = {}
    current: str | None = None
    lines: list[str] = []
    all_lines = stdout.split("\n")
    for number, line in enumerate(all_lines):
        complete = number < len(all_lines) - 1   # a newline followed it: not cut short
        if line.startswith(fence + " begin "):
            current, lines = line[len(fence) + 7:].strip(), []
        elif line.startswith(fence + " end ") and current is not None:
            fields = line[len(fence) + 5:].split()
            if not complete or len(fields) != 2 or not fields[1].isdigit():
                current = None   # the batch was cut inside the end fence: drop the section
                continue
            # build_batch echoes a newline before the end fence: it ends the probe's last
            # line, so joining the collected lines gives back the output exactly.
            sections[current] = Section("\n".join(lines), int(fields[1]))
            current = None
        elif current is not None:
            lines.append(line)
    return sections
