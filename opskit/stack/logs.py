"""The log lines each cause of a 502/504 leaves behind, counted in the tail of a log,
and the php-fpm events that tell who killed a worker.

    counts = scan(tail_text, "/var/log/php8.2-fpm.log")
    counts["fpm-terminate"].count, counts["fpm-terminate"].first, counts["fpm-terminate"].sample
    # 1, '2026-12-01T11:34:55', "[01-Dec-2026 11:34:55] WARNING: [pool site1] child 29743, script ..."
    counts["fpm-terminate"].where, counts["fpm-terminate"].seconds       # ('site1',), (2.509401, 2.509401)

    [(e.pid, e.signal_name, e.cause) for e in child_exits(fpm_log_text)]
    # [(29743, 'SIGTERM', 'fpm-terminate')] -- a SIGTERM after php-fpm's own "execution timed out"
    parse_timestamp("2026/12/01 10:15:00 [error] 1#1: ...")                # '2026-12-01T10:15:00'

Every signature was seen for real (tests/captures/php-fpm-8.2-debian12/logs/, made by
tests/captures/capture_timeouts.py on php-fpm 8.2, nginx 1.22, Apache 2.4). Each line
counts for one signature at most, the first of SIGNATURES that matches it, so a
"Maximum execution time" fatal is not also counted as a plain PHP fatal.

Families: `kill` (something ended the PHP worker or its request: php-fpm's terminate
timeout, a signal, PHP's own max_execution_time), `overload` (no worker free, slow
requests), `upstream` (the web server lost or never reached php-fpm: the visible side
of a kill, or php-fpm down), `gateway-timeout` (a web server or proxy stopped waiting:
504), and `php-error` (a fatal error in the script: 500, not a timeout).

Timestamps are kept as the log wrote them, as naive ISO text: php-fpm and nginx write
the server's local time, PHP's error_log the zone of date.timezone (named in the line:
"[01-Dec-2026 10:15:00 UTC]"), so lines of two logs compare only when the zones agree.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Iterator, Literal

Family = Literal["kill", "overload", "upstream", "gateway-timeout", "php-error"]
FAMILIES: tuple[Family, ...] = ("kill", "overload", "upstream", "gateway-timeout", "php-error")


@dataclass(frozen=True)
class Signature:
    name: str
    family: Family
    fires: str            # what fired, in a few words
    needle: str           # a plain substring every matching line holds (checked before the regex: fast)
    pattern: re.Pattern   # named groups: pool, pid, seconds, limit, target (all optional)
    http: str             # what the visitor got

    def matches(self, line: str) -> re.Match | None:
        return self.pattern.search(line) if self.needle in line else None

    def to_json(self) -> dict:
        return {"name": self.name, "family": self.family, "fires": self.fires, "pattern": self.pattern.pattern,
                "http": self.http}


_POOL = r"\[pool (?P<pool>[^\]]+)\] child (?P<pid>\d+)"
_EXITED = _POOL + r" exited on signal {number} \({name}(?: - core dumped)?\) after (?P<seconds>[\d.]+) seconds from start"

SIGNATURES: tuple[Signature, ...] = (
    # php-fpm's own log
    Signature("fpm-terminate", "kill", "php-fpm request_terminate_timeout", "execution timed out",
              re.compile(_POOL + r", script '[^']*' \(request: \"[^\"]*\"\) execution timed out "
                         r"\((?P<seconds>[\d.]+) sec\), terminating"), "502"),
    Signature("fpm-exit-sigterm", "kill", "SIGTERM to the worker: php-fpm's terminate, or a kill script (pkill's default)",
              "(SIGTERM", re.compile(_EXITED.format(number=15, name="SIGTERM")), "502"),
    Signature("fpm-exit-sigkill", "kill",
              "SIGKILL to the worker: a kill script, the OOM killer, or an RLIMIT_CPU hard limit",
              "(SIGKILL", re.compile(_EXITED.format(number=9, name="SIGKILL")), "502"),
    Signature("fpm-exit-sigxcpu", "kill", "the worker's CPU time limit (RLIMIT_CPU soft: ulimit -S -t, LVE)",
              "(SIGXCPU", re.compile(_EXITED.format(number=24, name="SIGXCPU")), "502"),
    Signature("fpm-exit-signal", "kill", "another signal: a crash (SIGSEGV, SIGBUS, SIGABRT) or another kill",
              "exited on signal", re.compile(_EXITED.format(number=r"(?!(?:3|9|15|24) )(?P<signal>\d+)",
                                                             name=r"[A-Z0-9]*")), "502"),
    Signature("fpm-max-children", "overload", "every php-fpm worker busy (pm.max_children)", "max_children setting",
              re.compile(r"\[pool (?P<pool>[^\]]+)\] server reached (?:pm\.)?max_children setting "
                         r"\((?P<limit>\d+)\), consider raising it"), "queued, then 502 or 504"),
    Signature("fpm-slow", "overload", "a request ran past request_slowlog_timeout", "executing too slow",
              re.compile(_POOL + r", script '[^']*' \(request: \"[^\"]*\"\) executing too slow "
                         r"\((?P<seconds>[\d.]+) sec\), logging"), "none by itself"),
    # PHP's error_log, or the web server's log when PHP has no error_log (FastCGI stderr)
    Signature("php-max-execution-time", "kill", "PHP max_execution_time (CPU time on Linux)",
              "Maximum execution time", re.compile(r"PHP Fatal error:\s+Maximum execution time of "
                                                   r"(?P<seconds>\d+) seconds? exceeded"), "500"),
    Signature("php-fatal", "php-error", "a PHP fatal error (an uncaught exception, memory exhausted, ...)",
              "PHP Fatal error:", re.compile(r"PHP Fatal error:"), "500"),
    # nginx's error log
    Signature("nginx-upstream-reset", "upstream", "the PHP worker died mid-request (killed, terminated, crashed)",
              "(104: Connection reset by peer)",
              re.compile(r"recv\(\) failed \(104: Connection reset by peer\) while reading response header "
                         r"from upstream"), "502"),
    Signature("nginx-upstream-closed", "upstream", "the upstream closed the connection before its answer",
              "upstream prematurely closed connection",
              re.compile(r"upstream prematurely closed connection while reading response header from upstream"),
              "502"),
    Signature("nginx-upstream-timeout", "gateway-timeout", "nginx fastcgi_read_timeout or proxy_read_timeout",
              "upstream timed out",
              re.compile(r"upstream timed out \(110: Connection timed out\) while reading response header "
                         r"from upstream"), "504"),
    Signature("nginx-backlog-full", "overload", "php-fpm's listen queue full: every worker busy",
              "(11: Resource temporarily unavailable)",
              re.compile(r"connect\(\) to (?P<target>\S+) failed \(11: Resource temporarily unavailable\) "
                         r"while connecting to upstream"), "502"),
    Signature("nginx-upstream-missing", "upstream", "no php-fpm socket file (php-fpm down, or another path)",
              "(2: No such file or directory)",
              re.compile(r"connect\(\) to (?P<target>\S+) failed \(2: No such file or directory\) "
                         r"while connecting to upstream"), "502"),
    Signature("nginx-upstream-refused", "upstream", "nobody listens on the upstream (php-fpm down)",
              "(111: Connection refused)",
              re.compile(r"connect\(\) (?:to (?P<target>\S+) )?failed \(111: Connection refused\) "
                         r"while connecting to upstream"), "502"),
    Signature("nginx-upstream-denied", "upstream", "the web server may not open php-fpm's socket",
              "(13: Permission denied)",
              re.compile(r"connect\(\) to (?P<target>\S+) failed \(13: Permission denied\) "
                         r"while connecting to upstream"), "502"),
    Signature("nginx-no-live-upstreams", "upstream", "every server of the upstream block marked failed",
              "no live upstreams", re.compile(r"no live upstreams while connecting to upstream"), "502"),
    # the kernel's log (`dmesg -T`): the OOM killer, for the whole host or one memory cgroup
    Signature("oom-kill", "overload", "the kernel's OOM killer (memory exhausted, or a cgroup's memory limit)",
              "Killed process", re.compile(r"(?P<scope>Memory cgroup out of memory|Out of memory): Killed process "
                                           r"(?P<pid>\d+) \((?P<target>[^)]*)\)"), "502 (SIGKILL)"),
    # Apache's error log (mod_proxy_fcgi)
    Signature("apache-fcgi-timeout", "gateway-timeout", "Apache ProxyTimeout (else Timeout)",
              "AH01075", re.compile(r"\(70007\)The timeout specified has expired: .*AH01075: "
                                    r"Error dispatching request to"), "504"),
    Signature("apache-fcgi-reset", "upstream", "the PHP worker died mid-request (killed, terminated, crashed)",
              "AH01075", re.compile(r"\(104\)Connection reset by peer: .*AH01075: Error dispatching request to"),
              "503"),
    Signature("apache-fcgi-connect-failed", "upstream", "Apache cannot reach php-fpm (down, or the socket's mode)",
              "FCGI: attempt to connect to",
              re.compile(r"\((?P<errno>\d+)\)[^:]*: AH0(?:2454|0957): FCGI: attempt to connect to "
                         r"(?:Unix domain socket )?(?P<target>\S+)"), "503"),
)

BY_NAME: dict[str, Signature] = {s.name: s for s in SIGNATURES}


# -- timestamps ------------------------------------------------------------------

_MONTHS = {name: number for number, name in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
# php-fpm "[01-Dec-2026 10:15:00]" (debug level adds .usec), PHP's error_log "[01-Dec-2026 10:15:00 UTC]"
_FPM_OR_PHP = re.compile(r"\[(\d{2})-([A-Z][a-z]{2})-(\d{4}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?(?: [^\]]+)?\]")
_NGINX = re.compile(r"(\d{4})/(\d{2})/(\d{2}) (\d{2}):(\d{2}):(\d{2}) \[")
_APACHE = re.compile(r"\[[A-Z][a-z]{2} ([A-Z][a-z]{2}) (\d{2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))? (\d{4})\]")
_DMESG_T = re.compile(r"\[[A-Z][a-z]{2} ([A-Z][a-z]{2}) +(\d{1,2}) (\d{2}):(\d{2}):(\d{2}) (\d{4})\]")


def parse_timestamp(line: str) -> str | None:
    """The time at the start of a php-fpm, PHP error_log, nginx or Apache error log line (or of
    a `dmesg -T` line),
    as ISO text ("2026-12-01T10:15:00", with ".123456" when the line has microseconds);
    None when the line does not start with one."""
    if match := _FPM_OR_PHP.match(line):
        day, month, year, hour, minute, second, fraction = match.groups()
        return _iso(year, _MONTHS.get(month), day, hour, minute, second, fraction)
    if match := _NGINX.match(line):
        year, month, day, hour, minute, second = match.groups()
        return _iso(year, int(month), day, hour, minute, second, None)
    if match := _APACHE.match(line):
        month, day, hour, minute, second, fraction, year = match.groups()
        return _iso(year, _MONTHS.get(month), day, hour, minute, second, fraction)
    if match := _DMESG_T.match(line):   # dmesg -T: "[Tue Dec  1 17:42:08 2026]"
        month, day, hour, minute, second, year = match.groups()
        return _iso(year, _MONTHS.get(month), day.zfill(2), hour, minute, second, None)
    return None


def _iso(year: str, month: int | None, day: str, hour: str, minute: str, second: str, fraction: str | None) -> str | None:
    if month is None:
        return None
    text = f"{year}-{month:02d}-{day}T{hour}:{minute}:{second}"
    return text + "." + fraction.ljust(6, "0") if fraction else text


# -- counting ----------------------------------------------------------------------

@dataclass(frozen=True)
class SignatureCount:
    signature: str
    family: Family
    fires: str
    source: str                               # the log it was counted in (a path, or a label)
    count: int
    first: str | None                         # ISO time of the first and last matching line (None: no time on it)
    last: str | None
    sample: str                               # the last matching line, as written
    sample_line: int                          # its line number in the text scanned
    where: tuple[str, ...] = ()               # pools, upstreams or sockets the lines name, first seen first
    seconds: tuple[float, float] | None = None  # (lowest, highest) N seconds the lines give
    limit: int | None = None                  # pm.max_children as the last line gives it

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class _Tally:
    count: int = 0
    first: str | None = None
    last: str | None = None
    sample: str = ""
    sample_line: int = 0
    where: dict[str, None] | None = None
    low: float | None = None
    high: float | None = None
    limit: int | None = None


def match_line(line: str) -> tuple[Signature, re.Match] | None:
    """The first signature `line` matches, with its match."""
    for signature in SIGNATURES:
        match = signature.matches(line)
        if match is not None:
            return signature, match
    return None


def numbered_lines(text: str, partial_first_line: bool = False) -> Iterator[tuple[int, str]]:
    """(line number, line) of a log or its tail, without the lines' \\r; with
    `partial_first_line`, the first line (cut by a tail read) is left out."""
    lines = text.split("\n")
    start = 1 if partial_first_line else 0
    for number, line in enumerate(lines[start:], start + 1):
        yield number, line.rstrip("\r")


def scan(text: str, source: str, partial_first_line: bool = False) -> dict[str, SignatureCount]:
    """{signature name: its count} for the signatures found in `text` (a log, or its
    tail: with `partial_first_line`, the first line is dropped, cut by the read)."""
    tallies: dict[str, _Tally] = {}
    for number, line in numbered_lines(text, partial_first_line):
        found = match_line(line)
        if found is None:
            continue
        signature, match = found
        _add(tallies.setdefault(signature.name, _Tally(where={})), line, number, match)
    return {name: _count(BY_NAME[name], source, tally) for name, tally in tallies.items()}


def _add(tally: _Tally, line: str, number: int, match: re.Match) -> None:
    groups = match.groupdict()
    at = parse_timestamp(line)
    tally.count += 1
    tally.first = tally.first or at
    tally.last = at or tally.last
    tally.sample, tally.sample_line = line, number
    named = groups.get("pool") or groups.get("target") or _upstream(line)
    if named:
        tally.where[named] = None
    if groups.get("seconds"):
        seconds = float(groups["seconds"])
        tally.low = seconds if tally.low is None else min(tally.low, seconds)
        tally.high = seconds if tally.high is None else max(tally.high, seconds)
    if groups.get("limit"):
        tally.limit = int(groups["limit"])


_UPSTREAM = re.compile(r', upstream: "([^"]*)"')


def _upstream(line: str) -> str | None:
    """The upstream nginx names at the end of its line ("fastcgi://unix:/run/php/php8.2-fpm.sock:")."""
    match = _UPSTREAM.search(line)
    return match.group(1) if match else None


def _count(signature: Signature, source: str, tally: _Tally) -> SignatureCount:
    seconds = (tally.low, tally.high) if tally.low is not None else None
    return SignatureCount(signature.name, signature.family, signature.fires, source, tally.count, tally.first,
                          tally.last, tally.sample, tally.sample_line, tuple(tally.where or ()), seconds, tally.limit)


def merge(*scans: dict[str, SignatureCount]) -> dict[str, SignatureCount]:
    """Counts of several logs (or several reads of one) as one: summed, first/last widened,
    the sample of the latest. `source` lists every log, joined by ", "."""
    merged: dict[str, SignatureCount] = {}
    for counts in scans:
        for name, count in counts.items():
            merged[name] = count if name not in merged else _merged(merged[name], count)
    return merged


def _merged(a: SignatureCount, b: SignatureCount) -> SignatureCount:
    times = [t for t in (a.first, a.last, b.first, b.last) if t]
    latest = b if (b.last or "") >= (a.last or "") else a
    seconds = [s for s in (a.seconds, b.seconds) if s]
    sources = ", ".join(dict.fromkeys((*a.source.split(", "), *b.source.split(", "))))
    return SignatureCount(a.signature, a.family, a.fires, sources, a.count + b.count, min(times, default=None),
                          max(times, default=None), latest.sample, latest.sample_line,
                          tuple(dict.fromkeys((*a.where, *b.where))),
                          (min(s[0] for s in seconds), max(s[1] for s in seconds)) if seconds else None,
                          latest.limit if latest.limit is not None else (a.limit or b.limit))


def by_family(counts: dict[str, SignatureCount]) -> dict[str, int]:
    """{family: lines counted}, for the families that have any."""
    totals: dict[str, int] = {}
    for count in counts.values():
        totals[count.family] = totals.get(count.family, 0) + count.count
    return totals


# -- who killed the worker: php-fpm's own lines, correlated by pool and pid ---------

_TERMINATE = re.compile(_POOL + r", script '(?P<script>[^']*)' \(request: \"(?P<request>[^\"]*)\"\) "
                        r"execution timed out \((?P<seconds>[\d.]+) sec\), terminating")
_EXIT = re.compile(_POOL + r" exited (?:on signal (?P<signal>\d+) \((?P<signame>[A-Z0-9]*)(?P<core> - core dumped)?\)"
                   r"|with code (?P<code>\d+)) after (?P<seconds>[\d.]+) seconds from start")

Cause = Literal["fpm-terminate", "external-term", "external-kill", "cpu-limit", "crash", "exit-code"]
_SIGNAL_CAUSES: dict[int, Cause] = {15: "external-term", 9: "external-kill", 24: "cpu-limit"}


@dataclass(frozen=True)
class ChildExit:
    """A php-fpm worker that died abnormally, and what the log says killed it."""
    pool: str
    pid: int
    signal: int | None            # None: it exited with a code
    signal_name: str | None       # "SIGKILL"
    exit_code: int | None
    seconds_from_start: float     # the worker's age, not the request's
    at: str | None                # ISO time of the exit line
    line: str
    line_number: int
    cause: Cause
    terminated_after: float | None = None   # php-fpm's "execution timed out (N sec)" before it
    script: str | None = None               # the script that was running, when php-fpm named it
    core_dumped: bool = False

    def to_json(self) -> dict:
        return asdict(self)


def child_exits(text: str) -> tuple[ChildExit, ...]:
    """The abnormal exits in a php-fpm log, each with its cause:

    - after php-fpm's own "execution timed out" for that pool and pid: `fpm-terminate`
      (request_terminate_timeout; php-fpm sends SIGTERM);
    - SIGTERM without it: `external-term` (a kill script: kill and pkill send SIGTERM by default);
    - SIGKILL without it: `external-kill` (a kill script, the OOM killer, or an RLIMIT_CPU
      hard limit equal to the soft one, which is what `ulimit -t N` sets);
    - SIGXCPU: `cpu-limit` (RLIMIT_CPU soft limit below the hard one);
    - another signal than SIGQUIT (SIGQUIT is php-fpm retiring an idle worker): `crash`;
    - an exit code other than 0: `exit-code`.

    A log tail cut between the two lines of a terminate reads as an external SIGTERM."""
    pending: dict[tuple[str, int], re.Match] = {}   # (pool, pid) -> its terminate line
    exits: list[ChildExit] = []
    for number, line in enumerate(text.split("\n"), 1):
        line = line.rstrip("\r")
        if "execution timed out" in line and (terminate := _TERMINATE.search(line)):
            pending[(terminate["pool"], int(terminate["pid"]))] = terminate
            continue
        if " exited " not in line or (exit_ := _EXIT.search(line)) is None:
            continue
        key = (exit_["pool"], int(exit_["pid"]))
        terminate = pending.pop(key, None)   # a pid is reused after its exit: forget its terminate
        exit_record = _exit(exit_, terminate, line, number)
        if exit_record is not None:
            exits.append(exit_record)
    return tuple(exits)


def _exit(match: re.Match, terminate: re.Match | None, line: str, number: int) -> ChildExit | None:
    signal = int(match["signal"]) if match["signal"] else None
    code = int(match["code"]) if match["code"] is not None else None
    if (signal == 3 or code == 0) and terminate is None:
        return None   # SIGQUIT: an idle worker retired (ondemand, dynamic); code 0: pm.max_requests
    if terminate is not None:
        cause: Cause = "fpm-terminate"
    elif signal is not None:
        cause = _SIGNAL_CAUSES.get(signal, "crash")
    else:
        cause = "exit-code"
    return ChildExit(match["pool"], int(match["pid"]), signal, match["signame"] or None, code,
                     float(match["seconds"]), parse_timestamp(line), line, number, cause,
                     float(terminate["seconds"]) if terminate else None,
                     terminate["script"] if terminate else None, bool(match["core"]))


def exit_causes(exits: tuple[ChildExit, ...]) -> dict[str, int]:
    """{cause: how many workers died of it}."""
    totals: dict[str, int] = {}
    for exit_record in exits:
        totals[exit_record.cause] = totals.get(exit_record.cause, 0) + 1
    return totals
