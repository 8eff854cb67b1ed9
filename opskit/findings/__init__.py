"""Findings: conclusions drawn by pure rules from probes and checks."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Severity(str, enum.Enum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


@dataclass(frozen=True)
class Finding:
    """One conclusion about a host.

    cause:    a stable machine name, e.g. "cdn-enabler-missing", "origin-502"
    severity: how bad it is
    summary:  one line for humans
    evidence: the raw facts it rests on (a log line, "file:line: directive", "GET url → 502")
    advice:   what to do next
    """

    cause: str
    severity: Severity
    summary: str
    evidence: tuple[str, ...] = field(default_factory=tuple)
    advice: str = ""

    def to_json(self) -> dict:
        return {
            "cause": self.cause,
            "severity": self.severity.value,
            "summary": self.summary,
            "evidence": list(self.evidence),
            "advice": self.advice,
        }

    def __rich__(self):
        from rich.text import Text

        colour = {"info": "cyan", "warning": "yellow", "error": "red", "critical": "bold red"}[self.severity.value]
        text = Text()
        text.append(f"{self.severity.value:<8}", style=colour)
        text.append(f" {self.summary}")
        for line in self.evidence:
            text.append(f"\n          {line}", style="dim")
        if self.advice:
            text.append(f"\n          → {self.advice}")
        return text
