"""PHP fatal errors and uncaught exceptions in a log, grouped by signature (defective code).

    groups = group(text, "/home/site1/public_html/wp-content/debug.log")
    groups[0].signature   # "Uncaught Error: Call to undefined function opskit_missing() in …/broken.php:3"
    groups[0].count, groups[0].first, groups[0].last, groups[0].sample, groups[0].line

A fatal is written three ways, all recognised:

    PHP's error_log / WordPress's debug.log
        [01-Dec-2026 10:15:00 UTC] PHP Fatal error:  Uncaught Error: Call to undefined function x() in /p/a.php:3
    php-fpm's log (the worker's stderr, catch_workers_output)
        [01-Dec-2026 10:15:00] WARNING: [pool www] child 12 said into stderr: "PHP Fatal error:  Uncaught …"
    nginx's error log (FastCGI stderr, when PHP has no error_log)
        2026/12/01 10:15:00 [error] 7#7: *1 FastCGI sent in stderr: "PHP message: PHP Fatal error:  Uncaught …

The signature is the message with the request-specific parts taken out (numbers in quotes,
hexadecimal ids, object ids), keeping the file and line of the code that failed: lines that
differ only in those count as one defect. Kinds: fatal (PHP Fatal error, including uncaught
exceptions), parse (PHP Parse error), and wordpress ("WordPress database error"). PHP's own
"Maximum execution time … exceeded" is a timeout, not a defect: it is left to the timeout rules.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from opskit.stack.logs import numbered_lines, parse_timestamp

_FATAL = re.compile(r"PHP (Fatal error|Parse error|Recoverable fatal error):\s+(?P<message>.*)")
_WP_DB = re.compile(r"(?P<message>WordPress database error .*)")
_WHERE = re.compile(r" in (?P<file>/\S+?)(?::(?P<line>\d+)| on line (?P<online>\d+))")
_NOISE = (
    (re.compile(r"0x[0-9a-fA-F]+"), "0x…"),
    (re.compile(r"#\d+"), "#…"),
    (re.compile(r"'[^']{40,}'"), "'…'"),
    (re.compile(r"\b\d{5,}\b"), "N"),
)
SKIP = ("Maximum execution time",)


@dataclass(frozen=True)
class ErrorGroup:
    signature: str            # the message without its variable parts
    kind: str                 # fatal, parse, wordpress
    count: int
    first: str | None         # ISO times as the log wrote them
    last: str | None
    sample: str               # the newest line, as written
    log: str                  # the log it was read from
    line: int | None          # the newest line's number in what was read
    code_file: str | None     # the PHP file that failed, and its line
    code_line: int | None

    def to_json(self) -> dict:
        return asdict(self)


def _message(line: str) -> tuple[str, str] | None:
    if (match := _FATAL.search(line)) is not None:
        message = match.group("message")
        kind = "parse" if match.group(1) == "Parse error" else "fatal"
    elif (match := _WP_DB.search(line)) is not None:
        message, kind = match.group("message"), "wordpress"
    else:
        return None
    # the wrappers' quoting: php-fpm's "said into stderr: "…"", nginx's "…" while reading …
    message = re.split(r'" while reading|", client: |"$', message)[0]
    message = message.split(" PHP Stack trace:")[0].split("\\nStack trace:")[0].split("Stack trace:")[0].strip()
    if any(s in message for s in SKIP):
        return None
    return kind, message


def signature(message: str) -> str:
    out = message
    for pattern, replacement in _NOISE:
        out = pattern.sub(replacement, out)
    return out


def group(text: str, log: str, partial_first_line: bool = False) -> list[ErrorGroup]:
    """The defects in `text` (a log or its tail), most frequent first, then newest."""
    tallies: dict[tuple[str, str], dict] = {}
    for number, line in numbered_lines(text, partial_first_line):
        found = _message(line)
        if found is None:
            continue
        kind, message = found
        key = (kind, signature(message))
        at = parse_timestamp(line)
        tally = tallies.setdefault(key, {"count": 0, "first": at, "last": at, "sample": line, "line": number,
                                         "message": message})
        tally["count"] += 1
        tally["last"] = at or tally["last"]
        tally["first"] = tally["first"] or at
        tally["sample"], tally["line"], tally["message"] = line, number, message
    groups = []
    for (kind, sig), tally in tallies.items():
        where = None
        for where in _WHERE.finditer(tally["message"]):
            pass   # the last " in FILE:LINE" names the failing code (after "thrown")
        code_line = None
        if where is not None:
            code_line = int(where.group("line") or where.group("online"))
        groups.append(ErrorGroup(sig, kind, tally["count"], tally["first"], tally["last"], tally["sample"], log,
                                 tally["line"], where.group("file") if where else None, code_line))
    groups.sort(key=lambda g: (-g.count, -(g.line or 0)))
    return groups
