"""Kill-script evidence in cron: crontab lines (and /etc/cron.hourly|daily scripts) that
kill PHP processes, by name, by user or by age, with file, line, schedule and the age
in seconds when the line says it.

    for found in kill_lines(text, "/etc/cron.d/php-reaper", kind="system"):
        found.schedule, found.user, found.tool, found.targets, found.signal, found.age_seconds
        # ('*/5 * * * *', 'root', 'killall', ('php-fpm8.2',), 'KILL', 300)

Three kinds of text: "user" (a `crontab -l`: five time fields or @hourly, then the
command), "system" (/etc/crontab and /etc/cron.d/*: a user field after the schedule),
and "script" (a file run by run-parts from /etc/cron.hourly, daily, weekly, monthly:
each line is a shell line; its schedule is the folder's).

A line counts when it runs kill, pkill or killall (or `xargs kill`) and names PHP
(php, php-fpm, php8.2-fpm, php-cgi, lsphp, "php-fpm: pool www") or a user (`-u`), or
kills by age (`killall -o 5m`, `pkill -O 300`, `ps -eo pid,etimes,...` with an awk
`$2 > 300`). Only what the line itself says: a crontab line that runs a script is
reported when the probe also reads that script as "script" text.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import asdict, dataclass
from typing import Literal

Kind = Literal["user", "system", "script"]
# @keywords cron accepts, as a schedule (Vixie/cronie/Debian cron)
SHORTCUTS = frozenset({"@reboot", "@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"})
_SCRIPT_FOLDERS = {"cron.hourly": "@hourly", "cron.daily": "@daily", "cron.weekly": "@weekly",
                   "cron.monthly": "@monthly"}
_ENV = re.compile(r"^\s*[A-Za-z_][A-Za-z0-9_]*\s*=")
_KILLERS = frozenset({"kill", "pkill", "killall"})
# a PHP process name: php, php8.2, php-fpm, php-fpm8.2, php8.2-fpm, php-cgi, lsphp, lsphp82 (not a .php file)
_PHP_NAME = re.compile(r"(?<![\w.-])(?:ls)?php[\d.]*(?:-(?:fpm|cgi)[\d.]*)?(?![\w.-]*\.php)(?=[\s\"':|$)\]/,;&>]|$)")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "M": 2592000, "y": 31536000}


@dataclass(frozen=True)
class CronEntry:
    file: str
    line: int
    schedule: str            # "*/5 * * * *" or "@hourly"
    user: str | None         # the user field of /etc/crontab and /etc/cron.d (None in a user crontab)
    command: str


@dataclass(frozen=True)
class KillLine:
    file: str
    line: int
    schedule: str | None     # None: a script line whose folder is not a cron.* one
    user: str | None
    command: str             # the command (crontab) or the line (script), as written
    tool: str                # "kill", "pkill", "killall"
    targets: tuple[str, ...] # PHP names and "user:NAME" the line kills
    signal: str              # "TERM" (the tools' default), "KILL", "9", ...
    age_seconds: int | None  # the age a process must reach to be killed, when the line says it

    def to_json(self) -> dict:
        return asdict(self)


def entries(text: str, file: str, kind: Kind = "user") -> tuple[CronEntry, ...]:
    """The job lines of a crontab (environment settings and comments left out)."""
    if kind == "script":
        raise ValueError("a script has no crontab entries: use kill_lines(text, file, 'script')")
    found: list[CronEntry] = []
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw.strip()
        if not line or line.startswith("#") or _ENV.match(line):
            continue
        fields = line.split(None, 1 if line.startswith("@") else 5)
        if line.startswith("@"):
            if fields[0] not in SHORTCUTS:
                continue
            rest = fields[1] if len(fields) > 1 else ""
            schedule = fields[0]
        else:
            if len(fields) < 6:
                continue
            schedule, rest = " ".join(fields[:5]), fields[5]
        user = None
        if kind == "system":
            user, rest = (rest.split(None, 1) + [""])[:2]
        if rest.strip():
            found.append(CronEntry(file, number, schedule, user, rest.strip()))
    return tuple(found)


def script_schedule(file: str) -> str | None:
    """@hourly for /etc/cron.hourly/x, and so on; None elsewhere."""
    parts = file.rstrip("/").split("/")
    return _SCRIPT_FOLDERS.get(parts[-2]) if len(parts) > 1 else None


def kill_lines(text: str, file: str, kind: Kind = "user") -> tuple[KillLine, ...]:
    """The lines of `text` that kill PHP processes, by name, user or age."""
    if kind == "script":
        candidates = [(number, raw.strip(), script_schedule(file), None)
                      for number, raw in enumerate(text.split("\n"), 1)
                      if raw.strip() and not raw.strip().startswith("#")]
    else:
        candidates = [(e.line, e.command, e.schedule, e.user) for e in entries(text, file, kind)]
    found = []
    for index, (number, command, schedule, user) in enumerate(candidates):
        evidence = kill_evidence(command)
        if evidence is None and kind == "script":
            evidence = _loop_evidence(command, [c[1] for c in candidates[max(0, index - 3):index]])
        if evidence is not None:
            tool, targets, signal, age = evidence
            found.append(KillLine(file, number, schedule, user, command, tool, targets, signal, age))
    return tuple(found)


def kill_evidence(command: str) -> tuple[str, tuple[str, ...], str, int | None] | None:
    """(tool, targets, signal, age in seconds) when `command` kills PHP processes (by name,
    user or age); None otherwise."""
    if not _may_kill(command):
        return None
    words = _words(command)
    tools = [(i, w) for i, w in enumerate(words) if _basename(w) in _KILLERS]
    if not tools:
        return None
    index, tool = tools[0]
    tool = _basename(tool)
    options = words[index + 1:_segment_end(words, index + 1)]
    targets = list(dict.fromkeys(m.group(0) for m in _PHP_NAME.finditer(command)))
    targets += [f"user:{name}" for name in _users(words)]
    age = _age(tool, options) or _ps_age(command)
    if not targets and age is None:
        return None
    return tool, tuple(dict.fromkeys(targets)), _signal(options), age


def _loop_evidence(command: str, before: list[str]) -> tuple[str, tuple[str, ...], str, int | None] | None:
    """A script's `kill "$pid"` inside a loop over `$(pgrep php-cgi)` or `ps ... | grep php` a
    few lines up: the kill, with the PHP names and age of the line that found the pids."""
    if not _may_kill(command):
        return None
    words = _words(command)
    tools = [_basename(w) for w in words if _basename(w) in _KILLERS]
    if not tools or "$" not in command:
        return None
    for line in reversed(before):
        if re.search(r"\b(?:pgrep|pidof|ps)\b", line):
            finder = kill_evidence("kill " + line)   # read the finder's names, users and age as a kill's
            if finder is not None:
                return tools[0], finder[1], _signal(words[1:]), finder[3]
    return None


def _may_kill(command: str) -> bool:
    """Whether a kill, pkill or killall can be among the line's words: tokenizing costs far more
    than this test, and a cron script's lines rarely kill (quotes and backslashes are dropped
    first, as the shell drops them: k\\ill and "kill" are still kill)."""
    return "kill" in command.translate(_QUOTING)


_QUOTING = str.maketrans("", "", "\"'\\")


def _words(command: str) -> list[str]:
    try:
        lexer = shlex.shlex(command, posix=True, punctuation_chars=";&|()`$")
        lexer.whitespace_split = True
        return list(lexer)
    except ValueError:   # an unbalanced quote: the plain words will do
        return command.split()


def _basename(word: str) -> str:
    return word.rsplit("/", 1)[-1]


def _segment_end(words: list[str], start: int) -> int:
    """Where the command starting at `start` ends (a ; | & or a closing parenthesis)."""
    for i in range(start, len(words)):
        if words[i] and all(char in ";&|()`$" for char in words[i]):
            return i
    return len(words)


def _users(words: list[str]) -> list[str]:
    """The users of `-u NAME`, `--user NAME`, `--euid=NAME` options (pkill, killall, ps)."""
    users = []
    for i, word in enumerate(words):
        if word in ("-u", "-U", "--user", "--euid", "--uid") and i + 1 < len(words):
            users.extend(words[i + 1].split(","))
        elif word.startswith(("--user=", "--euid=", "--uid=")):
            users.extend(word.split("=", 1)[1].split(","))
        elif re.fullmatch(r"-u\w+", word):
            users.append(word[2:])
    return users


def _signal(options: list[str]) -> str:
    for i, word in enumerate(options):
        if word in ("-s", "--signal", "-n") and i + 1 < len(options):
            return _signal_name(options[i + 1])
        if word.startswith("--signal="):
            return _signal_name(word.split("=", 1)[1])
        if re.fullmatch(r"-(?:SIG)?[A-Z]{3,}[A-Z0-9+-]*|-\d+", word):   # -9, -KILL; not -O, -U, -I
            return _signal_name(word[1:])
    return "TERM"


def _signal_name(text: str) -> str:
    name = text.upper().removeprefix("SIG")
    return {"9": "KILL", "15": "TERM", "2": "INT", "1": "HUP", "3": "QUIT"}.get(name, name)


def _age(tool: str, options: list[str]) -> int | None:
    """killall -o/--older-than TIME (5m, 1h, 30s; a bare number is seconds), pkill -O/--older SECONDS."""
    flags = {"killall": ("-o", "--older-than"), "pkill": ("-O", "--older")}.get(tool, ())
    for i, word in enumerate(options):
        value = None
        if word in flags and i + 1 < len(options):
            value = options[i + 1]
        elif any(word.startswith(flag + "=") for flag in flags):
            value = word.split("=", 1)[1]
        if value is not None:
            return duration_seconds(value)
    return None


def duration_seconds(text: str) -> int | None:
    """killall's TIME: a number and an optional unit (s m h d w M y)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhdwMy]?)", text.strip())
    if match is None:
        return None
    return int(float(match.group(1)) * _UNITS[match.group(2) or "s"])


def _ps_age(command: str) -> int | None:
    """`ps -eo pid,etimes,comm | awk '$2 > 300 ...'`: the seconds compared to the etimes field."""
    columns = re.search(r"\bps\b[^|]*?-\w*o\s*([\w,=]+)", command)
    names = [name.split("=")[0] for name in columns.group(1).split(",")] if columns else []
    if "etimes" not in names:
        return None
    field = names.index("etimes") + 1
    compared = re.search(rf"\${field}\s*>=?\s*(\d+)", command)
    return int(compared.group(1)) if compared else None
