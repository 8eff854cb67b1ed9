"""measure: the real kill time of a slow PHP request on this host, measured.

    - check: measure
      with: {url_path: "{{ steps.probe.url_path }}", name: "{{ steps.probe.name }}", max: "{{ run.measure_max }}",
             logs: {fpm: ..., web: ..., php: ...}, pm_max_children: ..., expected: "{{ steps.chain }}"}

It requests the temporary probe (opskit/changes/measure.py) straight from the origin (the
inventory's `origin`, with the site's Host header: no DNS, no CDN, no edge) twice: in wall
mode (the script sleeps: what a request waiting on the database or an API looks like) and in
CPU mode (it spins: what max_execution_time and CPU limits count), each for at most `max`
seconds, at the same time when the pool has two workers or more (one after the other
otherwise). For each it reports when the request ended, with which HTTP code, and the lines
the logs gained meanwhile (read from their size before the requests: the host's clock and
log rotation are handled, nothing else is read), and decides which layer ended it:

    502/503 + "execution timed out"              php-fpm request_terminate_timeout
    502 + "signal 9 (SIGKILL)", no terminate      a kill from outside php-fpm (kill script, OOM, CPU hard limit)
    502 + "signal 24 (SIGXCPU)"                   the worker's CPU time limit
    500 / "Maximum execution time"                PHP max_execution_time
    504 + "upstream timed out"                    nginx fastcgi_read_timeout (Apache: ProxyTimeout)
    200 "OPSKIT-MEASURE survived"                 nothing, within `max`

and compares it with what the static chain predicts (the timeout_chain rule's value). The
guard removes the probe at its deadline whatever happens, so the requests are cut to end
before it (the deadline is read from the host; the check says when it shortened them).
"""

from __future__ import annotations

import datetime
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from opskit.duration import parse_duration
from opskit.findings import Evidence, Family, Finding, Severity
from opskit.probes._collect import Collected, collect, new_mark
from opskit.rules.facts import secs
from opskit.shell import quote, token
from opskit.stack import logs
from opskit.steps import Check, CheckResult, Context, Verdict, register

SAFETY = 8.0         # seconds kept between the last request's end and the guard's deadline
SETTLE = 1.5         # php-fpm's master logs a child's exit on its next tick (1 s)
WINDOW_BYTES = 1024 * 1024
MODES = ("wall", "cpu")
SURVIVED = "OPSKIT-MEASURE survived"


class MeasureParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url_path: str | None                           # where the probe answers ("/opskit-measure-….php"); None: not uploaded
    name: str | None = None                        # its file name (log lines naming it belong to it)
    max: float = 120                               # seconds per request at most
    logs: dict[str, str | None] = Field(default_factory=dict)   # role → log path (fpm, web, php, edge, slow)
    pm_max_children: dict | str | int | None = None             # the pool's (ConfigValue): 1 → one at a time
    expected: dict | None = None                   # the timeout_chain rule step's value
    become: str | None = None
    timeout_slack: float = Field(default=10, ge=1, le=120)

    @field_validator("max", mode="before")
    @classmethod
    def _duration(cls, value):
        return parse_duration(value, maximum=3600) if isinstance(value, str) else value


@dataclass
class ModeResult:
    mode: str
    status: int | None = None
    error: str | None = None
    seconds: float = 0.0
    started: float = 0.0          # controller epoch
    ended: float = 0.0
    survived: bool = False
    body: str = ""
    lines: list[dict] = field(default_factory=list)       # {"file", "text"} the logs gained in its window
    signatures: list[str] = field(default_factory=list)
    layer: str = "unknown"
    who: str = ""
    log_seconds: float | None = None                      # php-fpm's own "execution timed out (N sec)"

    def to_json(self) -> dict:
        out = asdict(self)
        out["body"] = self.body[:300]
        out["seconds"] = round(self.seconds, 2)
        out["started"], out["ended"] = round(self.started, 3), round(self.ended, 3)
        return out


# -- pure: which lines belong to which request, and which layer ended it ------------------------

def host_epoch(line: str, tz: str) -> float | None:
    """The epoch of a log line's timestamp (written in the host's local time, `date +%z`)."""
    iso = logs.parse_timestamp(line)
    if iso is None:
        return None
    match = re.fullmatch(r"([+-])(\d{2})(\d{2})", tz or "+0000")
    sign, hours, minutes = match.groups() if match else ("+", "00", "00")
    offset = datetime.timedelta(hours=int(hours), minutes=int(minutes)) * (-1 if sign == "-" else 1)
    try:
        return datetime.datetime.fromisoformat(iso).replace(tzinfo=datetime.timezone(offset)).timestamp()
    except ValueError:
        return None


def attribute(windows: dict[str, str], results: list[ModeResult], name: str | None, tz: str,
              clock_offset: float) -> None:
    """Give each mode the log lines of its window: a line naming the probe and its mode goes to
    that mode; a timed line to the modes whose request was running then (from a second before
    it started to SETTLE + a second after it ended); a line without either (a slow log's stack
    trace) goes with the line before it."""
    spans = {r.mode: (r.started + clock_offset - 1, r.ended + clock_offset + SETTLE + 1) for r in results}
    by_mode = {r.mode: r for r in results}
    for file, text in windows.items():
        last: list[str] = []
        for line in text.split("\n"):
            line = line.rstrip("\r")
            if not line.strip():
                continue
            owners: list[str]
            if name and name in line and re.search(r"mode=(wall|cpu)", line):
                owners = [re.search(r"mode=(wall|cpu)", line).group(1)]
            else:
                at = host_epoch(line, tz)
                if at is not None:
                    owners = [m for m, (low, high) in spans.items() if low <= at <= high]
                else:
                    owners = last
            last = owners
            for mode in owners:
                if mode in by_mode and len(by_mode[mode].lines) < 40:
                    by_mode[mode].lines.append({"file": file, "text": line})


def judge(result: ModeResult) -> None:
    """Which layer ended this request, from its answer and its log lines."""
    found = set()
    for line in result.lines:
        match = logs.match_line(line["text"])
        if match is not None:
            found.add(match[0].name)
        timed = re.search(r"execution timed out \(([\d.]+) sec\)", line["text"])
        if timed:
            result.log_seconds = float(timed.group(1))
    result.signatures = sorted(found)
    status, body = result.status, result.body
    if result.error is not None:
        result.layer, result.who = "unknown", f"no answer: {result.error}"
    elif status == 200 and SURVIVED in body:
        result.survived = True
        result.layer, result.who = "none", "nothing ended it"
    elif "fpm-terminate" in found:
        result.layer, result.who = "request_terminate_timeout", "php-fpm's request_terminate_timeout"
    elif "fpm-exit-sigxcpu" in found:
        result.layer, result.who = "cpu-limit", "the worker's CPU time limit (SIGXCPU)"
    elif "fpm-exit-sigkill" in found:
        result.layer, result.who = "kill-script", ("a SIGKILL from outside php-fpm (a kill script, the OOM killer, "
                                                   "or a CPU limit whose soft and hard values are equal)")
    elif "fpm-exit-sigterm" in found:
        result.layer, result.who = "kill-script", "a SIGTERM from outside php-fpm (kill, pkill)"
    elif "php-max-execution-time" in found or "Maximum execution time" in body:
        result.layer, result.who = "max_execution_time", "PHP's max_execution_time"
    elif status == 504:
        if "apache-fcgi-timeout" in found:
            result.layer, result.who = "apache_proxy_timeout", "Apache's ProxyTimeout"
        elif "nginx-upstream-timeout" in found:
            result.layer, result.who = "fastcgi_read_timeout", "nginx's fastcgi_read_timeout"
        else:
            result.layer, result.who = "fastcgi_read_timeout", "a gateway timeout (504; the web server's log says no more)"
    elif status in (502, 503):
        result.layer, result.who = "worker-died", ("the PHP worker died under the request; php-fpm's log says "
                                                   "nothing readable about why")
    elif status == 500:
        result.layer, result.who = "max_execution_time", "PHP failed with a 500 (max_execution_time, or an error)"
    else:
        result.layer, result.who = "unknown", f"HTTP {status}"


def telling(lines: list[dict], most: int = 4) -> list[dict]:
    """The lines that say what ended a request (a known signature), else the first few."""
    known = [line for line in lines if logs.match_line(line["text"]) is not None
             and logs.match_line(line["text"])[0].name not in ("fpm-slow",)]
    return (known or lines)[:most]


LAYER_LABELS = {"max_execution_time": "PHP max_execution_time", "request_terminate_timeout":
                "php-fpm request_terminate_timeout", "fastcgi_read_timeout": "nginx fastcgi_read_timeout",
                "apache_proxy_timeout": "Apache ProxyTimeout", "proxy_read_timeout": "edge proxy_read_timeout"}


def predicted(expected: dict | None, mode: str) -> tuple[str | None, float | None]:
    """The static chain's (layer, seconds) for a waiting (wall) or a busy (cpu) request."""
    if not expected:
        return None, None
    if mode == "cpu":
        busy = expected.get("cpu_bound") or {}
        return busy.get("fires_first"), busy.get("seconds")
    return expected.get("fires_first"), expected.get("fires_first_seconds")


def conclude(results: list[ModeResult], cap: float, capped_from: float | None, expected: dict | None,
             url_path: str) -> Finding:
    """One finding: when each request ended, by what, against what the configuration predicts."""
    parts, evidence, surprises = [], [], []
    for r in results:
        kind = "a request that waits (sleep)" if r.mode == "wall" else "a request busy on the CPU"
        layer, seconds = predicted(expected, r.mode)
        if r.survived:
            said = f"{kind} ran its full {secs(round(r.seconds, 1))}: nothing ended it"
        elif r.error is not None:
            said = f"{kind} got no answer after {secs(round(r.seconds, 1))} ({r.error})"
        else:
            logged = f" (php-fpm: execution timed out after {r.log_seconds:.1f}s)" if r.log_seconds is not None else ""
            said = f"{kind} ended after {secs(round(r.seconds, 1))} with HTTP {r.status} — {r.who}{logged}"
        if layer is not None and seconds is not None:
            within = seconds <= cap + 0.5
            same = r.layer == layer and not r.survived and abs(r.seconds - seconds) <= max(2.0, 0.1 * seconds)
            if same:
                said += f", as the configuration predicts ({LAYER_LABELS.get(layer, layer)}, {secs(seconds)})"
            elif r.survived and not within:
                said += f"; the configuration predicts {LAYER_LABELS.get(layer, layer)} at {secs(seconds)}, past the measurement"
            else:
                said += f"; the configuration predicts {LAYER_LABELS.get(layer, layer)} after {secs(seconds)}"
                surprises.append(r.mode)
        parts.append(said)
        answer = f"HTTP {r.status}" if r.status is not None else (r.error or "no answer")
        evidence.append(Evidence(f"GET {url_path}?mode={r.mode} (origin) → {answer} after {r.seconds:.1f}s"))
        evidence += [Evidence(line["text"], file=line["file"]) for line in telling(r.lines)]
    if capped_from is not None:
        parts.append(f"each request was limited to {secs(cap)} (not {secs(capped_from)}) so it ends before the "
                     "guard removes the probe; give a longer --hold to measure longer")
    died = [r for r in results if not r.survived and r.error is None]
    kinds = {r.layer for r in died}
    if surprises and kinds & {"kill-script", "cpu-limit", "worker-died"}:
        advice = ("something outside the timeout chain ends PHP workers: see the kill-script findings (cron, CSF, "
                  "LVE, CPU limits), or ask the host what kills long-running PHP processes")
    elif surprises:
        advice = ("the real kill time differs from the configuration opskit could read: a layer it could not read "
                  "(or a script's set_time_limit()) decides; the unknown settings are named in the timeout-chain finding")
    elif died:
        advice = "the chain behaves as configured; to let longer scripts finish, opskit run tune-timeouts --script-time N"
    else:
        advice = "nothing on the host ends a slow request within the measurement: the CDN or a proxy in front is the first to give up"
    severity = Severity.WARNING if surprises else Severity.INFO
    return Finding("measured-kill-time", severity, "measured from the origin: " + "; ".join(parts), tuple(evidence),
                   advice, family=Family.KILL)


# -- the check ------------------------------------------------------------------------------

@register
class Measure(Check):
    """Request the temporary probe in wall and CPU mode until something ends it: the real kill time."""

    name = "measure"
    Params = MeasureParams

    def preflight(self, params: MeasureParams, ctx: Context) -> str | None:
        if not ctx.host.origin:
            return "no origin in the inventory: the measurement requests the probe straight from the origin"
        return None

    def run(self, params: MeasureParams, ctx: Context) -> CheckResult:
        import os

        from opskit.checks.http import classify, fetch, origin_target, trust_for   # requests: imported when used

        if params.url_path is None:
            return CheckResult(Verdict.ERROR, "no probe was uploaded (the upload step says why): nothing measured")
        if unmet := self.preflight(params, ctx):
            return CheckResult(Verdict.ERROR, unmet, unmet=unmet)
        log_paths = [p for p in dict.fromkeys(v for v in params.logs.values() if v)]
        before = self._sizes(ctx, log_paths, params.become)
        remaining = before["deadline"] - before["now"] if before["deadline"] else None
        one_at_a_time = _max_children(params.pm_max_children) == 1
        budget = params.max
        if remaining is not None:
            room = (remaining - SAFETY - SETTLE) / (2 if one_at_a_time else 1)
            budget = min(params.max, room)
        if budget < 1:
            return CheckResult(Verdict.ERROR, f"the guard removes the probe in {remaining:.0f}s: no time left to "
                                              "measure; give a longer --hold")
        cap = round(budget, 1)
        capped_from = params.max if cap < params.max else None
        trust = trust_for(ctx.host.tls, os.environ)
        interrupt = getattr(ctx, "interrupt", None)

        def one(mode: str) -> ModeResult:
            result = ModeResult(mode)
            target = origin_target(ctx.host, f"{params.url_path}?mode={mode}&max={cap:g}")
            result.started = time.time()
            begun = time.monotonic()
            try:
                answer = fetch(target, trust, cap + params.timeout_slack, bypass_cache=True)
                result.status, result.body = answer.status, answer.body
            except Exception as exc:   # noqa: BLE001 — what the request met is the measurement
                kind, detail = classify(exc)
                result.error = f"{kind}: {detail}"
            result.seconds = time.monotonic() - begun
            result.ended = time.time()
            return result

        pool = ThreadPoolExecutor(max_workers=1 if one_at_a_time else 2, thread_name_prefix="opskit-measure")
        futures = [pool.submit(one, mode) for mode in MODES]
        try:
            while not all(f.done() for f in futures):
                if interrupt is not None and interrupt.is_set():
                    return CheckResult(Verdict.ERROR, "interrupted during the measurement")
                time.sleep(0.1)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        results = [f.result() for f in futures]
        time.sleep(SETTLE)
        windows = self._windows(ctx, log_paths, before, params.become)
        attribute(windows, results, params.name, before["tz"], before["offset"])
        for result in results:
            judge(result)
        finding = conclude(results, cap, capped_from, params.expected, params.url_path)
        died = [r for r in results if not r.survived and r.error is None]
        observed = {"max": cap, "capped_from": capped_from, "concurrent": not one_at_a_time,
                    "modes": {r.mode: r.to_json() for r in results},
                    "kill_seconds": round(min(r.seconds for r in died), 2) if died else None,
                    "layer": min(died, key=lambda r: r.seconds).layer if died else "none",
                    "logs": {p: windows.get(p) is not None for p in log_paths}}
        summary = "; ".join(f"{r.mode}: " + ("survived" if r.survived else f"HTTP {r.status}" if r.status
                                                else r.error or "?") + f" after {r.seconds:.1f}s ({r.layer})"
                            for r in results)
        return CheckResult(Verdict.PASSED, summary, observed=observed, findings=(finding,))

    # the two execs: sizes before, what the logs gained after

    def _sizes(self, ctx: Context, paths: list[str], become: str | None) -> dict:
        deadline = f'"$HOME/.opskit/tx/{token(ctx.run_id)}/deadline"'
        body = "".join(f"printf 'size{i}=%s\\n' \"$(wc -c < {quote(p)} 2>/dev/null)\"\n" for i, p in enumerate(paths))
        outside = (f"printf 'now=%s\\ntz=%s\\n' \"$(date +%s)\" \"$(date +%z)\"\n"
                   f"[ -r {deadline} ] && printf 'deadline=%s\\n' \"$(cat {deadline})\"\n")
        asked = time.time()
        got = Collected.parse(ctx.session.exec(collect(body, new_mark(), become=become == "sudo", outside=outside)).stdout)
        answered = time.time()
        now = _int(got.kv.get("now")) or int(answered)
        return {"now": now, "tz": got.kv.get("tz", "+0000"), "deadline": _int(got.kv.get("deadline")),
                "offset": now - (asked + answered) / 2,
                "sizes": {p: _int(got.kv.get(f"size{i}")) for i, p in enumerate(paths)}}

    def _windows(self, ctx: Context, paths: list[str], before: dict, become: str | None) -> dict[str, str]:
        body = []
        for i, path in enumerate(paths):
            size = before["sizes"].get(path)
            if size is None:
                continue
            body.append(f"f={quote(path)}; z=$(wc -c < \"$f\" 2>/dev/null); o={int(size)}; "
                        f"[ \"${{z:-0}}\" -lt \"$o\" ] && o=0; "
                        f"run_block 'window {i}' sh -c 'tail -c +\"$1\" -- \"$2\" | head -c {WINDOW_BYTES}' sh "
                        f"\"$((o + 1))\" \"$f\"")
        if not body:
            return {}
        got = Collected.parse(ctx.session.exec(collect("\n".join(body), new_mark(), become=become == "sudo")).stdout)
        return {path: got.blocks[f"window {i}"][1] for i, path in enumerate(paths) if f"window {i}" in got.blocks}


def _int(text: str | None) -> int | None:
    text = (text or "").strip()
    return int(text) if text.isdigit() else None


def _max_children(value: Any) -> int | None:
    if isinstance(value, dict):
        value = value.get("value")
    text = str(value or "").strip()
    return int(text) if text.isdigit() else None
