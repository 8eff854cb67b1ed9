"""Findings: conclusions drawn by pure rules (opskit/rules/) from probes and checks.

    Finding("php-fpm-kills-at-30s", Severity.ERROR, "php-fpm ends requests after 30s",
            (Evidence("request_terminate_timeout = 30s", file="/etc/php/8.2/fpm/pool.d/www.conf", line=412),),
            "raise it above max_execution_time", family=Family.KILL)

The JSON document keeps `evidence` as a list of strings ("FILE:LINE: text" when the
evidence comes from a file) and adds `family` and `evidence_detail` ({text, file, line}).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Severity(str, enum.Enum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


class Family(enum.StrEnum):
    """Which kind of cause a finding is about: the families of a 502, and opskit's own."""

    OVERLOAD = "overload"     # the origin is out of workers, CPU or memory
    KILL = "kill"             # a timeout or a kill script ends the PHP worker
    CDN = "cdn"               # the CDN, its plugin, or the firewall between edge and origin
    DNS = "dns"               # the name points (or is cached) at the wrong address
    UPSTREAM = "upstream"     # php-fpm (or the origin web server) is down or refusing
    CODE = "code"             # the site's own PHP fails (fatal errors)
    ORIGIN = "origin"         # what the origin answers, straight or through the CDN
    OPSKIT = "opskit"         # opskit's own state on the host: locks, overdue rollbacks


class Evidence(str):
    """One fact a finding rests on. It is the text shown (so it compares and prints as a
    string), and keeps where it came from when that is a file."""

    file: str | None
    line: int | None
    text: str

    def __new__(cls, text: str, file: str | None = None, line: int | None = None) -> "Evidence":
        shown = f"{file}:{line}: {text}" if file and line else f"{file}: {text}" if file else text
        self = super().__new__(cls, shown)
        self.text, self.file, self.line = text, file, line
        return self

    def to_json(self) -> dict:
        return {"text": self.text, "file": self.file, "line": self.line}


@dataclass(frozen=True)
class Finding:
    """One conclusion about a host.

    cause:    a stable machine name, e.g. "cdn-enabler-missing", "origin-502"
    severity: how bad it is
    summary:  one line for humans
    evidence: the facts it rests on (a log line, a directive at file:line, "GET url → 502");
              plain strings are accepted and become Evidence
    advice:   what to do next
    family:   which kind of cause (None when it does not say)
    """

    cause: str
    severity: Severity
    summary: str
    evidence: tuple[Evidence, ...] = field(default_factory=tuple)
    advice: str = ""
    family: Family | None = None

    def __post_init__(self) -> None:
        items = tuple(e if isinstance(e, Evidence) else Evidence(str(e)) for e in self.evidence)
        object.__setattr__(self, "evidence", items)
        if self.family is not None and not isinstance(self.family, Family):
            object.__setattr__(self, "family", Family(self.family))

    def to_json(self) -> dict:
        return {
            "cause": self.cause,
            "severity": self.severity.value,
            "summary": self.summary,
            "evidence": [str(e) for e in self.evidence],
            "advice": self.advice,
            "family": self.family.value if self.family else None,
            "evidence_detail": [e.to_json() for e in self.evidence],
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
