"""Rules about the timeout chain a slow PHP request passes through, and what ended requests.

    - rule: timeout_chain       # static: which layer fires first, what the visitor sees, what to set
      with: {max_execution_time: "{{ steps.t.php.max_execution_time }}", ...,
             cdn_timeout: "{{ host.cdn.timeout }}", cdn_name: "{{ host.cdn.name }}"}
    - rule: fpm_timeout         # php-fpm's log: "execution timed out" then SIGTERM → 502
    - rule: gateway_timeout     # nginx's "upstream timed out … reading response header", Apache's
                                # "(70007)The timeout specified has expired … AH01075" → 504

The chain, inner to outer (opskit.rules.facts.TimeoutChain says where each value comes from):

    max_execution_time (PHP, CPU time)  → the visitor sees PHP's fatal error (500)
    request_terminate_timeout (php-fpm) → php-fpm kills the worker: 502 from nginx, 503 from Apache
    fastcgi_read_timeout (nginx) | ProxyTimeout/Timeout (mod_proxy_fcgi) → 504
                                 | FcgidIOTimeout (mod_fcgid) → 500
    proxy_read_timeout (the edge proxy) → 504
    the CDN → its own code (Cloudflare: 524)

A consistent chain has each layer longer than the one behind it by the margin, so the
innermost layer ends a slow request and says why (PHP's error names the script and line).
max_execution_time counts CPU time on Linux: a request waiting on the database or a remote
API is not stopped by it, so for a waiting request the first *wall-clock* layer fires first.
FcgidBusyTimeout is mod_fcgid's backstop that kills a process still busy after Apache gave up
(checked every FcgidBusyScanInterval): it is compared with the layers behind it only.

timeout_chain always draws one finding: error when an outer layer fires at or before an inner
one (the visitor gets the outer layer's worse error and the worker keeps running), warning when
request_terminate_timeout or max_execution_time is 0 (off) or two layers are closer than the
margin, info when the chain is consistent or unknown settings keep it from telling (so the
report can always show which layer fires first). Its value() carries the table and the chain to
set (see chain_value); unknown settings are named as unknown, never guessed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from opskit.findings import Evidence, Family, Finding, Severity
from opskit.rules.facts import FpmTimeoutFacts, GatewayFacts, LogScan, Setting, TimeoutChain, secs, when
from opskit.steps import Rule, register

State = Literal["on", "off", "unknown"]


@dataclass(frozen=True)
class Layer:
    """One timeout of the chain as it stands.

    name:     the layer's id in value() ("fastcgi_read_timeout", "cdn")
    label:    for humans ("nginx fastcgi_read_timeout")
    seconds:  the effective value; None when unknown
    state:    on, off (0 where 0 means off), unknown
    clock:    cpu (max_execution_time) or wall
    code:     what the visitor sees when this layer fires ("504")
    who:      how that comes about, for the summary
    setting:  the Setting tune-timeouts edits (ProxyTimeout even when Timeout gives the value)
    settable: False for the CDN (the inventory's)
    backstop: fcgid_busy_timeout: only compared with the layers behind it
    """

    name: str
    label: str
    seconds: float | None
    state: State
    clock: str
    code: str
    who: str
    evidence: tuple[Evidence, ...]
    setting: Setting | None = None
    settable: bool = True
    backstop: bool = False

    def shown(self) -> str:
        if self.state == "unknown":
            return f"{self.label} (unknown)"
        return f"{self.label} ({secs(self.seconds)}{', off' if self.state == 'off' else ''})"


# -- the chain as it stands ---------------------------------------------------

def chain_layers(facts: TimeoutChain) -> list[Layer]:
    """The layers a slow request of this site passes through, inner to outer."""
    server = facts.web_server()
    out = [_layer("max_execution_time", "PHP max_execution_time", facts.max_execution_time,
                  "500", "PHP stops the script with a fatal error, a 500 (Maximum execution time exceeded)",
                  ("max_execution_time", "PHP", " = "), clock="cpu", zero_is_off=True)]
    if facts.request_terminate_timeout is not None and server != "apache-fcgid":
        code, web = {"apache-proxy-fcgi": ("503", "Apache answers 503"), "nginx": ("502", "nginx answers 502")}.get(
            server, ("502", "the web server answers 502 (nginx) or 503 (Apache)"))
        out.append(_layer("request_terminate_timeout", "php-fpm request_terminate_timeout",
                          facts.request_terminate_timeout, code, f"php-fpm kills the worker and {web}",
                          ("request_terminate_timeout", "php-fpm", " = "), zero_is_off=True))
    if server == "nginx":
        out.append(_layer("fastcgi_read_timeout", "nginx fastcgi_read_timeout",
                           facts.fastcgi_read_timeout or Setting(reason="not given"), "504",
                           "nginx gives up on php-fpm and answers 504 while the worker keeps running",
                           ("fastcgi_read_timeout", "nginx", " ")))
    elif server == "apache-proxy-fcgi":
        out.append(_apache_proxy(facts))
    elif server == "apache-fcgid":
        out.append(_layer("fcgid_io_timeout", "mod_fcgid FcgidIOTimeout",
                          facts.fcgid_io_timeout or Setting(reason="not given"),
                          "500", "Apache gives up reading from PHP and answers 500 while the process keeps running",
                          ("FcgidIOTimeout", "mod_fcgid", " ")))
        if facts.fcgid_busy_timeout is not None:
            out.append(_layer("fcgid_busy_timeout", "mod_fcgid FcgidBusyTimeout", facts.fcgid_busy_timeout,
                              "500", "mod_fcgid kills the busy PHP process and Apache answers 500",
                              ("FcgidBusyTimeout", "mod_fcgid", " "), backstop=True))
    if facts.proxy_read_timeout is not None:
        out.append(_layer("proxy_read_timeout", "edge proxy_read_timeout", facts.proxy_read_timeout, "504",
                          "the edge proxy gives up on the origin and answers 504 while the origin keeps working",
                          ("proxy_read_timeout", "nginx", " ")))
    if facts.cdn_timeout is not None or facts.cdn_name:
        cdn = facts.cdn_name or "CDN"
        cloudflare = "cloudflare" in cdn.lower()
        code = "524" if cloudflare else "the CDN's timeout error"
        known = facts.cdn_timeout is not None
        text = (f"{cdn} waits {secs(facts.cdn_timeout)} for the origin (inventory)" if known
                else f"{cdn}'s timeout: unknown (set the host's cdn timeout in the inventory)")
        out.append(Layer("cdn", f"{cdn} timeout", facts.cdn_timeout, "on" if known else "unknown", "wall", code,
                         f"{cdn} gives up on the origin and shows {'its 524 page' if cloudflare else 'its timeout error'}"
                         " while the origin keeps working",
                         (Evidence(text),), settable=False))
    return out


def _layer(name, label, setting: Setting, code, who, syntax, clock="wall", zero_is_off=False, backstop=False) -> Layer:
    key, software, sep = syntax
    state: State = "unknown" if not setting.known else "off" if zero_is_off and setting.seconds == 0 else "on"
    return Layer(name, label, setting.seconds if setting.known else None, state, clock, code, who,
                 (setting.evidence(key, software, sep),), setting, backstop=backstop)


def _apache_proxy(facts: TimeoutChain) -> Layer:
    """mod_proxy_fcgi waits ProxyTimeout (or the worker's timeout=), else Apache's Timeout."""
    proxy, timeout = facts.apache_proxy_timeout, facts.apache_timeout
    who = "Apache (mod_proxy_fcgi) gives up on php-fpm and answers 504 while the worker keeps running"
    label = "Apache ProxyTimeout"
    if proxy is not None and proxy.source != "default":    # set, inherited, or unknown (it may be set)
        return _layer("apache_proxy_timeout", label, proxy, "504", who, ("ProxyTimeout", "Apache", " "))
    timeout = timeout or Setting(reason="not given")
    layer = _layer("apache_proxy_timeout", label, timeout, "504", who,
                   ("Timeout", "Apache", " "))
    note = Evidence("ProxyTimeout: not set, Apache waits its Timeout")
    return Layer(layer.name, layer.label, layer.seconds, layer.state, layer.clock, layer.code, layer.who,
                 (note, *layer.evidence), proxy or Setting(source="default", seconds=layer.seconds))


# -- which layer fires first --------------------------------------------------

@dataclass(frozen=True)
class FirstFire:
    layer: Layer | None      # None: no known layer stops such a request
    certain: bool            # False: an unknown layer could fire sooner


def fires_first(layers: list[Layer], cpu_bound: bool = False) -> FirstFire:
    """The layer that ends a slow request first: for a request that waits (wall clock; PHP's
    CPU-time limit does not count) or one busy on the CPU (it does). A tie goes to the outer
    layer, the worse of the two answers."""
    candidates = [(i, l) for i, l in enumerate(layers) if cpu_bound or l.clock == "wall"]
    on = [(i, l) for i, l in candidates if l.state == "on"]
    unknown = any(l.state == "unknown" for _, l in candidates)
    if not on:
        return FirstFire(None, not unknown)
    _, best = min(on, key=lambda item: (item[1].seconds, -item[0]))
    return FirstFire(best, not unknown)


@dataclass(frozen=True)
class Pair:
    inner: Layer
    outer: Layer


def misordered(layers: list[Layer], margin: float) -> tuple[list[Pair], list[Pair]]:
    """(pairs where the outer layer fires at or before the inner one, pairs closer than margin),
    over the known layers that are on."""
    bad, tight = [], []
    for i, inner in enumerate(layers):
        for outer in layers[i + 1:]:
            if inner.state != "on" or outer.state != "on" or inner.backstop:
                continue
            if outer.seconds <= inner.seconds:
                bad.append(Pair(inner, outer))
            elif outer.seconds - inner.seconds < margin:
                tight.append(Pair(inner, outer))
    return bad, tight


# -- the chain to set -----------------------------------------------------------

@dataclass(frozen=True)
class Proposal:
    seconds: dict[str, int | float]  # layer name → seconds, inner to outer
    script_time: int | None          # what it was built from (after any cap)
    note: str | None                 # why there is none, or why it was capped


def propose(facts: TimeoutChain, layers: list[Layer]) -> Proposal:
    """A consistent chain for the longest legitimate script (the script time, else the current
    max_execution_time), changing as little as it can.

    max_execution_time = the script time; every next settable layer is at least one margin
    (whole seconds, rounded up) longer than the one behind it, and the outermost one at least a
    margin under the CDN's timeout. A layer keeps its current value when that fits between those
    bounds, else moves to the nearest bound; a layer that is off (request_terminate_timeout 0)
    or unknown gets the shortest consistent value. So a chain that is already consistent stays as
    it is, and request_terminate_timeout is never 0. When the script time cannot fit under the
    CDN the chain is fitted under it and the note says so."""
    step = math.ceil(facts.margin)
    met = layers[0]
    if facts.script_time is not None:
        script = math.ceil(facts.script_time)
    elif met.state == "on" and met.seconds > 0:
        script = math.ceil(met.seconds)
    else:
        why = "is unknown" if met.state == "unknown" else "is 0 (no limit)"
        return Proposal({}, None, f"max_execution_time {why} and no script time was given: "
                                  "give the longest legitimate script time (tune-timeouts --script-time)")
    main = [l for l in layers if l.settable and not l.backstop]
    cdn = next((l for l in layers if l.name == "cdn"), None)
    note, ceiling = None, math.inf
    if cdn is not None and cdn.state == "on":
        ceiling = cdn.seconds
        cap = math.floor(ceiling - len(main) * step)
        if cap < 1:
            return Proposal({}, None, f"{cdn.label} ({secs(ceiling)}) leaves no room for {len(main)} layers "
                                      f"{step}s apart: lower the margin")
        if script > cap:
            note = (f"a request through {cdn.label.removesuffix(' timeout')} cannot last longer than {secs(ceiling)}: "
                    f"the chain is fitted under it with scripts of up to {cap}s (not {script}s); "
                    "run longer jobs from cron or WP-CLI, not through the CDN")
            script = cap
    elif cdn is not None:
        note = f"{cdn.label} is unknown: the proposal is not fitted under it"
    seconds: dict[str, float] = {}
    upper = math.inf                              # the most this layer may take: a margin under the next one out
    for k in range(len(main) - 1, 0, -1):         # outer to inner: each within [shortest, upper]
        layer, shortest = main[k], script + k * step
        upper = min(upper, ceiling - (len(main) - k) * step)
        current = layer.seconds if layer.state == "on" else None
        chosen = shortest if current is None else min(max(current, shortest), upper)
        seconds[layer.name] = chosen
        upper = chosen - step
    seconds[main[0].name] = script
    ordered = {layer.name: _num(seconds[layer.name]) for layer in main}
    for layer in layers:
        if layer.backstop:   # FcgidBusyTimeout: at least a margin past FcgidIOTimeout
            floor = ordered.get("fcgid_io_timeout", script) + step
            ordered[layer.name] = _num(max(layer.seconds, floor) if layer.state == "on" else floor)
    return Proposal(ordered, script, note)


def changes(layers: list[Layer], proposal: Proposal) -> list[dict]:
    """What differs between the chain as it stands and the proposal, where it is set."""
    out = []
    for layer in layers:
        target = proposal.seconds.get(layer.name)
        if target is None or (layer.state != "unknown" and layer.seconds == target):
            continue
        setting = layer.setting or Setting()
        out.append({"layer": layer.name, "from": _num(layer.seconds), "to": target,
                    "raw": setting.raw, "source": setting.source, "file": setting.file,
                    "line": setting.line, "where": setting.where})
    return out


def chain_value(facts: TimeoutChain) -> dict:
    """The chain for later steps and the report:

    {"served_by": "nginx" | "apache-proxy-fcgi" | "apache-fcgid" | None,
     "layers": [{"layer", "label", "seconds", "raw", "source", "file", "line", "where",
                 "state": "on"|"off"|"unknown", "clock": "cpu"|"wall", "visitor_sees"}],   inner → outer
     "fires_first": layer | None,          for a request that waits (wall clock)
     "fires_first_seconds": float | None,
     "visitor_sees": "502" | "504" | "524" | ... | None,
     "certain": bool,                      False: an unknown layer could fire sooner
     "cpu_bound": {"fires_first", "seconds", "visitor_sees", "certain"},   max_execution_time counts
     "unknown": [layer], "off": [layer],
     "misordered": [{"inner", "outer", "inner_seconds", "outer_seconds"}], "tight": [...same],
     "consistent": bool | None,            None: unknown settings keep it from telling
     "script_time": int | None, "margin": int,
     "proposal": {layer: seconds},         inner → outer, settable layers only (not the CDN)
     "proposal_note": str | None,
     "changes": [{"layer", "from", "to", "raw", "source", "file", "line", "where"}]}
    """
    return _analyse(facts).value()


# -- the rule ---------------------------------------------------------------------

@dataclass(frozen=True)
class _Analysis:
    facts: TimeoutChain
    layers: list[Layer]
    waiting: FirstFire
    busy: FirstFire
    bad: list[Pair]
    tight: list[Pair]
    proposal: Proposal

    @property
    def off(self) -> list[Layer]:
        return [l for l in self.layers if l.state == "off"]

    @property
    def unknown(self) -> list[Layer]:
        return [l for l in self.layers if l.state == "unknown"]

    def consistent(self) -> bool | None:
        if self.bad or self.tight or self.off:
            return False
        return None if self.unknown else True

    def value(self) -> dict:
        def first(f: FirstFire) -> dict:
            return {"fires_first": f.layer.name if f.layer else None,
                    "seconds": _num(f.layer.seconds) if f.layer else None,
                    "visitor_sees": f.layer.code if f.layer else None, "certain": f.certain}

        def pairs(items: list[Pair]) -> list[dict]:
            return [{"inner": p.inner.name, "outer": p.outer.name, "inner_seconds": _num(p.inner.seconds),
                     "outer_seconds": _num(p.outer.seconds)} for p in items]

        rows = []
        for l in self.layers:
            s = l.setting or Setting()
            rows.append({"layer": l.name, "label": l.label, "seconds": _num(l.seconds), "raw": s.raw,
                         "source": "inventory" if l.name == "cdn" else s.source, "file": s.file, "line": s.line,
                         "where": s.where, "state": l.state, "clock": l.clock, "visitor_sees": l.code})
        waiting = first(self.waiting)
        return {"served_by": self.facts.web_server(), "layers": rows,
                "fires_first": waiting["fires_first"], "fires_first_seconds": waiting["seconds"],
                "visitor_sees": waiting["visitor_sees"], "certain": waiting["certain"],
                "cpu_bound": first(self.busy),
                "unknown": [l.name for l in self.unknown], "off": [l.name for l in self.off],
                "misordered": pairs(self.bad), "tight": pairs(self.tight), "consistent": self.consistent(),
                "script_time": self.proposal.script_time, "margin": math.ceil(self.facts.margin),
                "proposal": dict(self.proposal.seconds), "proposal_note": self.proposal.note,
                "changes": changes(self.layers, self.proposal)}


def analyse(facts: TimeoutChain) -> _Analysis:
    """The chain's layers, which fires first, what is misordered, and the proposal (its
    value() is chain_value's); tune-timeouts' planner (rules/tuning.py) starts from it."""
    return _analyse(facts)


def _analyse(facts: TimeoutChain) -> _Analysis:
    layers = chain_layers(facts)
    bad, tight = misordered(layers, facts.margin)
    return _Analysis(facts, layers, fires_first(layers), fires_first(layers, cpu_bound=True), bad, tight,
                     propose(facts, layers))


@register
class TimeoutChainRule(Rule):
    """Which timeout ends a slow request first, what the visitor then sees, and the chain to set."""

    name = "timeout_chain"
    Params = TimeoutChain

    def evaluate(self, facts: TimeoutChain) -> list[Finding]:
        return [chain_finding(_analyse(facts))]

    def value(self, facts: TimeoutChain) -> dict:
        return chain_value(facts)


def chain_finding(a: _Analysis) -> Finding:
    parts = [_first_sentence(a)]
    for name in dict.fromkeys(p.outer.name for p in a.bad):   # grouped by the layer that fires too soon
        outer = next(p.outer for p in a.bad if p.outer.name == name)
        inners = [p.inner for p in a.bad if p.outer.name == name]
        parts.append(f"{outer.shown()} fires at or before {_and([i.shown() for i in inners])}, which should end "
                     f"the request first: the visitor gets {outer.code} instead of {inners[0].code}")
    for layer in a.off:
        parts.append("request_terminate_timeout is 0: php-fpm never ends a hung request, the worker stays busy "
                     "until it finishes" if layer.name == "request_terminate_timeout"
                     else "max_execution_time is 0: PHP never stops a script itself")
    if a.tight:
        parts.append("closer than the margin: " + ", ".join(f"{p.inner.shown()} → {p.outer.shown()}" for p in a.tight))
    met = a.layers[0]
    if met.state == "on":
        busy = a.busy.layer
        tail = (f"; a script busy on the CPU meets {busy.label} first ({busy.code})"
                if busy is not None and busy is not met and busy is not a.waiting.layer else "")
        parts.append(f"max_execution_time ({secs(met.seconds)}) counts CPU time: a script waiting on the database "
                     f"or a remote API is not stopped by it{tail}")
    severity = (Severity.ERROR if a.bad else Severity.WARNING if a.off or a.tight else Severity.INFO)
    evidence = tuple(e for layer in a.layers for e in layer.evidence)
    return Finding("timeout-chain", severity, "; ".join(parts), evidence, _chain_advice(a), family=Family.KILL)


def _first_sentence(a: _Analysis) -> str:
    first = a.waiting.layer
    unknown = [l.label for l in a.unknown]
    if first is None:
        if unknown:
            return f"cannot tell which timeout ends a slow request: {_and(unknown)} unknown"
        return "nothing ends a slow request that waits: every wall-clock timeout is off or absent"
    said = f"{first.label} fires first, after {secs(first.seconds)}: {first.who}"
    if a.waiting.certain:
        return f"for a slow request, {said}"
    verb = "is" if len(unknown) == 1 else "are"
    return f"of the known timeouts, {said}; {_and(unknown)} {verb} unknown and could fire sooner"


def _chain_advice(a: _Analysis) -> str:
    changes_ = changes(a.layers, a.proposal)
    note = f" ({a.proposal.note})" if a.proposal.note else ""
    if not a.proposal.seconds:
        return (a.proposal.note or "") + ("; " if a.unknown else "") + _unknown_advice(a)
    if not changes_:
        tail = f"; {_unknown_advice(a)}" if a.unknown else ""
        return (f"nothing to change for scripts of up to {a.proposal.script_time}s{note}; "
                f"for longer ones: opskit run tune-timeouts --script-time N{tail}")
    labels = {l.name: l.label for l in a.layers}
    sets = ", ".join(f"{labels[c['layer']]} {c['to']}s{_where(c)}" for c in changes_)
    tail = f"; {_unknown_advice(a)}" if a.unknown else ""
    return (f"set a consistent chain for scripts of up to {a.proposal.script_time}s, at least "
            f"{math.ceil(a.facts.margin)}s between layers: {sets}{note} "
            f"— opskit run tune-timeouts does it, and undoes it unless confirmed{tail}")


def _where(change: dict) -> str:
    if change["source"] == "unknown":
        return " (where it is set: unknown)"
    if change["source"] == "default":
        return f" (not set: add it{' in ' + change['where'] if change['where'] else ''})"
    at = f"{change['file']}:{change['line']}" if change["file"] and change["line"] else change["file"] or change["where"]
    inherited = ", inherited: set it in the site's own block" if change["source"] == "inherited" else ""
    return f" ({at}{inherited})" if at else ""


def _unknown_advice(a: _Analysis) -> str:
    if not a.unknown:
        return ""
    return (f"{_and([l.label for l in a.unknown])} could not be read: ask the host for "
            f"{'it' if len(a.unknown) == 1 else 'them'}, or measure the real kill time "
            "(opskit run check-timeouts --measure)")


# -- what the logs say ended requests ---------------------------------------------

_SCRIPT = re.compile(r"script '([^']*)'")
_FPM_REQUEST = re.compile(r'\(request: "([^"]*)"\)')
_NGINX_REQUEST = re.compile(r'request: "([^"]*)"')


@register
class FpmTimeout(Rule):
    """php-fpm's request_terminate_timeout ended requests (its log says so): 502s."""

    name = "fpm_timeout"
    Params = FpmTimeoutFacts

    def evaluate(self, facts: FpmTimeoutFacts) -> list[Finding]:
        log = facts.fpm_log
        if log is None:
            return []
        if not log.readable:
            return [log_unreadable(log, "php-fpm's log", "whether php-fpm ends slow requests")]
        terminated = log.seen("fpm-terminate")
        if terminated is None:
            return []
        setting = facts.request_terminate_timeout
        limit = f" ({secs(setting.seconds)})" if setting is not None and setting.known else ""
        script = _SCRIPT.search(terminated.sample or "")
        request = _FPM_REQUEST.search(terminated.sample or "")
        what = f" — {request.group(1)}" if request else ""
        evidence = [log.evidence("fpm-terminate")]
        if log.seen("fpm-exit-sigterm"):
            evidence.append(log.evidence("fpm-exit-sigterm"))
        if setting is not None:
            evidence.append(setting.evidence("request_terminate_timeout", "php-fpm", " = "))
        died = died_under_request(facts.web_log)
        evidence += died
        name = script.group(1) if script else "the script"
        apache = facts.web_log is not None and facts.web_log.seen("apache-fcgi-reset") is not None
        nginx = facts.web_log is not None and facts.web_log.seen("nginx-upstream-reset") is not None
        code = "a 503 from Apache" if apache and not nginx else "a 502" if nginx else "a 502 (503 through Apache)"
        return [Finding(
            "fpm-timeout", Severity.ERROR,
            f"php-fpm ended requests at its request_terminate_timeout{limit} {when(terminated)}{what}: "
            f"it killed the worker (SIGTERM) and the visitor got {code}",
            tuple(evidence),
            f"if {name} is expected to run that long, raise the chain around it (opskit run tune-timeouts "
            "--script-time N keeps max_execution_time under request_terminate_timeout, so PHP stops it with a "
            "logged error first); otherwise make it faster: request_slowlog_timeout makes php-fpm log where it "
            "spends the time",
            family=Family.KILL)]


def died_under_request(web_log: LogScan | None) -> list[Evidence]:
    """The web server's side of a dead worker: nginx's reset, or mod_proxy_fcgi's."""
    if web_log is None:
        return []
    return [web_log.evidence(name) for name in ("nginx-upstream-reset", "apache-fcgi-reset") if web_log.seen(name)]


@register
class GatewayTimeout(Rule):
    """A web server gave up waiting for the upstream's response header (origin or edge): 504s."""

    name = "gateway_timeout"
    Params = GatewayFacts

    def evaluate(self, facts: GatewayFacts) -> list[Finding]:
        out = []
        for log, place in ((facts.origin_log, "origin"), (facts.edge_log, "edge")):
            if log is None:
                continue
            if not log.readable:
                out.append(log_unreadable(log, f"the {place}'s web server error log", "whether it answered 504"))
                continue
            found = log.seen("nginx-upstream-timeout")
            if found is not None:
                kinds = _upstream_kinds(found, place)
                for kind in kinds:
                    out.append(_nginx_timeout(facts, log, place, kind, shared=len(kinds) > 1))
            if log.seen("apache-fcgi-timeout") is not None:
                out.append(_apache_timeout(facts, log))
        return out


_SCHEME = re.compile(r'upstream: "([a-z]+)://')


def _upstream_kinds(found, place: str) -> list[str]:
    """fastcgi and/or proxy, from the upstreams the lines name; by the log's place when they name none."""
    kinds = [k for k in ("fastcgi", "proxy") if _upstreams(found, k) or _kind(found.sample) == k]
    return kinds or (["fastcgi"] if place == "origin" else ["proxy"])


def _kind(upstream: str | None) -> str | None:
    match = _SCHEME.search(upstream or "") or re.match(r"([a-z]+)://", upstream or "")
    scheme = match.group(1) if match else None
    return "fastcgi" if scheme == "fastcgi" else "proxy" if scheme in ("http", "https") else None


def _upstreams(found, kind: str) -> list[str]:
    return [u for u in found.where if _kind(u) == kind]


def _nginx_timeout(facts: GatewayFacts, log: LogScan, place: str, kind: str, shared: bool) -> Finding:
    found = log.signatures["nginx-upstream-timeout"]
    own_sample = _kind(found.sample) in (kind, None)
    request = _NGINX_REQUEST.search(found.sample or "") if own_sample else None
    what = f" — {request.group(1)}" if request else ""
    counted = f"({when(found)} for both kinds of upstream)" if shared else when(found)
    fastcgi = kind == "fastcgi"
    setting = facts.fastcgi_read_timeout if fastcgi else facts.proxy_read_timeout
    key = "fastcgi_read_timeout" if fastcgi else "proxy_read_timeout"
    limit = f" ({secs(setting.seconds)})" if setting is not None and setting.known else ""
    if own_sample:
        evidence = [log.evidence("nginx-upstream-timeout")]
    else:   # the sample is of the other kind: name this kind's upstreams, as the lines did
        evidence = [Evidence(f'upstream timed out (110: Connection timed out) … upstream: "{u}"',
                             file=found.file or log.file) for u in _upstreams(found, kind)]
    if setting is not None:
        evidence.append(setting.evidence(key, "nginx", " "))
    if fastcgi:
        summary = (f"nginx at the {place} gave up waiting for php-fpm after its fastcgi_read_timeout{limit} "
                   f"{counted}{what}: the visitor got a 504 while the PHP worker kept running")
        advice = ("raise fastcgi_read_timeout above request_terminate_timeout so php-fpm ends a slow request "
                  "itself and logs which script it was (opskit run tune-timeouts sets the whole chain), or make "
                  "the script faster; until it finishes the abandoned worker still holds one of pm.max_children")
    else:
        who = "the edge proxy" if place == "edge" else "nginx at the origin"
        summary = (f"{who} gave up waiting for its upstream after its proxy_read_timeout{limit} {counted}{what}: "
                   "the visitor got a 504 while the upstream kept working")
        advice = ("raise proxy_read_timeout above the upstream's own timeouts (fastcgi_read_timeout or Apache's "
                  "ProxyTimeout behind it) so the layer nearest PHP ends a slow request and says why; "
                  "opskit run tune-timeouts sets the whole chain")
    return Finding("gateway-timeout", Severity.ERROR, summary, tuple(evidence), advice, family=Family.KILL)


def _apache_timeout(facts: GatewayFacts, log: LogScan) -> Finding:
    found = log.signatures["apache-fcgi-timeout"]
    setting = facts.apache_proxy_timeout
    limit = f" ({secs(setting.seconds)})" if setting is not None and setting.known else ""
    evidence = [log.evidence("apache-fcgi-timeout")]
    if setting is not None:
        evidence.append(setting.evidence("ProxyTimeout", "Apache", " "))
    return Finding(
        "gateway-timeout", Severity.ERROR,
        f"Apache (mod_proxy_fcgi) gave up waiting for php-fpm after its ProxyTimeout{limit} {when(found)}: "
        "the visitor got a 504 while the PHP worker kept running",
        tuple(evidence),
        "raise ProxyTimeout (or the worker's timeout=) above request_terminate_timeout so php-fpm ends a slow "
        "request itself and logs which script it was (opskit run tune-timeouts sets the whole chain), or make the "
        "script faster",
        family=Family.KILL)


def log_unreadable(log: LogScan, what: str, question: str) -> Finding:
    """A log this user may not read: said plainly, nothing concluded from it."""
    where = log.file or "(not found)"
    return Finding(
        "log-unreadable", Severity.INFO,
        f"cannot tell {question}: {what} {where} is not readable by this user" + (f" ({log.reason})" if log.reason else ""),
        (Evidence(log.reason or "not readable", file=log.file),),
        "name a log this user may read in the inventory, run as a user who may read it (become), "
        "or measure the real kill time (opskit run check-timeouts --measure)",
        family=Family.KILL)


def _num(seconds: float | None) -> int | float | None:
    if seconds is None:
        return None
    return int(seconds) if float(seconds).is_integer() else seconds


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
