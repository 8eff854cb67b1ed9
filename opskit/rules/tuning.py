"""timeout_plan: the edits that make a site's timeout chain consistent — which file, which
directive, which block — from the chain as the probes read it (rules/timeouts.py proposes the
values) and where each value is set. Pure: the playbook hands its `edits` to config_edit.

    - rule: timeout_plan
      id: plan
      with: {max_execution_time: "{{ steps.fpm.php_timeouts.max_execution_time }}", ...,   # as timeout_chain
             nginx: "{{ steps.web.nginx_timeouts }}", fpm: "{{ steps.fpm.phpfpm_timeouts }}",
             php: "{{ steps.fpm.php_timeouts }}", become: "{{ host.become }}",
             script_time: "{{ run.script_time }}"}
    - change: config_edit
      with: {edits: "{{ steps.plan.edits }}"}

Where each edit lands (config_edit's planner finds the line; this rule names the file, the
format and the block):

    max_execution_time         where the value in force is set: the pool's php_admin_value /
                               php_value (php-fpm format, the pool), a .user.ini (php-ini), the
                               FPM SAPI's php.ini. Set nowhere: php.ini with root (become:
                               sudo), else the docroot's .user.ini — all a shared-hosting user
                               may change. A php_admin_value cannot be overridden by .user.ini:
                               without root that one is for the host to change.
    request_terminate_timeout  the pool (php-fpm format: the main file, the pool by name)
    fastcgi_read_timeout       the origin nginx's PHP location of the site (set there, or added
                               there when inherited from http or the default)
    proxy_read_timeout         the edge nginx's location that proxies to the origin
    apache_proxy_timeout       Apache's ProxyTimeout for the site's <VirtualHost> (set there, or
                               added there when inherited from the server config or unset, when
                               Apache waits its Timeout)
    mod_fcgid's timeouts       not edited by opskit yet: listed under `manual` with the line to
                               set and where (file:line or the virtual host)

Value (merged into the rule step's value):

    {"edits":  [{"layer", "from", "to", **config_edit params (file, format, directive, value,
                 server_name, location, pool, section, prefix, validate, handlers, ...)}],
     "manual": [{"layer", "from", "to", "line": "ProxyTimeout 65", "where", "why"}],
     "before": "PHP max_execution_time 30s → … → cloudflare timeout 100s",
     "after":  "… with the proposal",
     "chain": timeout_chain's value}
"""

from __future__ import annotations

import posixpath
import re
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict

from opskit.findings import Evidence, Family, Finding, Severity
from opskit.rules.facts import Setting, TimeoutChain, secs
from opskit.rules.timeouts import Layer, analyse
from opskit.steps import Rule, register


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class NginxPlace(_Loose):
    conf: str | None = None
    server: str | None = None      # "http > server[site1.example.test]"
    location: str | None = None    # "http > server[site1.example.test] > location ~ \\.php$"
    pid: int | None = None


class NginxInstance(_Loose):
    pid: int | None = None
    conf: str | None = None
    prefix: str | None = None


class NginxSite(_Loose):
    """The nginx_timeouts probe's value (the parts the plan needs)."""
    origin: NginxPlace | None = None
    edge: NginxPlace | None = None
    instances: tuple[NginxInstance, ...] = ()
    origin_error_log: str | None = None
    edge_error_log: str | None = None


class FpmMaster(_Loose):
    conf: str | None = None
    binary: str | None = None


class FpmSite(_Loose):
    """The phpfpm_timeouts probe's value (the parts the plan needs)."""
    conf: str | None = None
    pool: str | None = None
    masters: tuple[FpmMaster, ...] = ()


class PhpSite(_Loose):
    """The php_timeouts probe's value (the parts the plan needs)."""
    php_ini: str | None = None
    user_ini: str | None = None
    docroot: str | None = None


class ApacheInstance(_Loose):
    conf: str | None = None
    server_root: str | None = None


class ApacheSite(_Loose):
    """The apache_timeouts probe's value (the parts the plan needs)."""
    instances: tuple[ApacheInstance, ...] = ()
    served_by: str | None = None


class TimeoutPlanFacts(TimeoutChain):
    """timeout_chain's facts, plus where the site's servers keep their configs."""
    site: str | None = None        # the site's URL (the inventory's wordpress.url): its <VirtualHost>
    apache: ApacheSite | None = None
    nginx: NginxSite | None = None
    fpm: FpmSite | None = None
    php: PhpSite | None = None
    become: str | None = None      # the inventory's become: "sudo" may edit root's files


def shown(layers: list[Layer], seconds: dict | None = None) -> str:
    """The chain inner → outer as one line; with `seconds`, the proposal in place."""
    out = []
    for layer in layers:
        value = (seconds or {}).get(layer.name)
        if value is not None:
            out.append(f"{layer.label} {secs(value)}")
        elif layer.state == "unknown":
            out.append(f"{layer.label} ?")
        else:
            out.append(f"{layer.label} 0 (off)" if layer.state == "off" else f"{layer.label} {secs(layer.seconds)}")
    return " → ".join(out)


def plan_edits(facts: TimeoutPlanFacts) -> dict:
    """The plan (see the module docstring)."""
    a = analyse(facts)
    value = a.value()
    edits, manual = [], []
    for change in value["changes"]:
        layer = next(l for l in a.layers if l.name == change["layer"])
        placed = _place(facts, layer, change)
        entry = {"layer": layer.name, "from": change["from"], "to": change["to"]}
        if isinstance(placed, str):
            manual.append({**entry, **_manual(facts, layer, change, placed)})
        else:
            edits.append({**entry, **placed})
    after = dict(value["proposal"]) if value["proposal"] else None
    return {"edits": edits, "manual": manual, "before": shown(a.layers),
            "after": shown(a.layers, after) if after else None, "chain": value}


def _place(facts: TimeoutPlanFacts, layer: Layer, change: dict) -> dict | str:
    """config_edit's parameters for one change, or why opskit cannot make it."""
    to = change["to"]
    setting = layer.setting or Setting()
    if setting.source == "unknown":
        return f"where {layer.label} is set could not be read ({setting.reason or 'unknown'})"
    if layer.name == "max_execution_time":
        return _php(facts, setting, to)
    if layer.name == "request_terminate_timeout":
        fpm = facts.fpm
        if fpm is None or not fpm.conf or not fpm.pool:
            return "the php-fpm master's config and the site's pool are not known"
        return {"file": fpm.conf, "format": "php-fpm", "directive": "request_terminate_timeout",
                "value": f"{_int(to)}s", "pool": fpm.pool, **_fpm_server(fpm)}
    if layer.name in ("fastcgi_read_timeout", "proxy_read_timeout"):
        nginx = facts.nginx
        place = None if nginx is None else nginx.origin if layer.name == "fastcgi_read_timeout" else nginx.edge
        if place is None or not place.conf or not place.server:
            return f"the nginx server block that governs the site for {layer.name} is not known"
        server_name = _bracketed(place.server)
        location = place.location.rsplit(" > ", 1)[-1] if place.location else None
        if server_name is None or (location is not None and not location.startswith("location ")):
            return f"the nginx block for {layer.name} is not a named server's location ({place.location or place.server})"
        instance = next((i for i in nginx.instances if i.conf == place.conf and (place.pid is None or i.pid == place.pid)), None)
        log = nginx.origin_error_log if layer.name == "fastcgi_read_timeout" else nginx.edge_error_log
        params = {"file": place.conf, "format": "nginx", "directive": layer.name, "value": f"{_int(to)}s",
                  "server_name": server_name, "location": location.removeprefix("location ") if location else None,
                  "inherited": "override", "validate": "nginx", "handlers": [{"reload": "nginx"}]}
        if instance is not None and instance.prefix:
            params["prefix"] = instance.prefix
        if log:
            params["error_log"] = log
        return params
    if layer.name == "apache_proxy_timeout":
        apache = facts.apache
        instance = next((i for i in apache.instances if i.conf), None) if apache is not None else None
        host = urlsplit(facts.site if "//" in (facts.site or "") else f"//{facts.site or ''}").hostname
        if instance is None or not host:
            return "the Apache configuration or the site's name is not known"
        params = {"file": instance.conf, "format": "apache", "directive": "ProxyTimeout", "value": str(_int(to)),
                  "server_name": host, "inherited": "override", "validate": "apache", "handlers": [{"reload": "apache"}]}
        if instance.server_root:
            params["server_root"] = instance.server_root
        return params
    return f"opskit does not edit {layer.label} yet"


def _php(facts: TimeoutPlanFacts, setting: Setting, to) -> dict | str:
    php, fpm = facts.php, facts.fpm
    root = facts.become == "sudo"
    value = str(_int(to))
    text = setting.text or ""
    pooled = re.match(r"\s*(php_admin_value|php_value)\[max_execution_time\]", text)
    if pooled:
        if fpm is None or not fpm.conf or not fpm.pool:
            return "the php-fpm pool that sets it is not known"
        if pooled.group(1) == "php_value" and not root and php is not None and php.user_ini:
            return _user_ini(php, value)      # .user.ini overrides php_value
        return {"file": fpm.conf, "format": "php-fpm", "directive": f"{pooled.group(1)}[max_execution_time]",
                "value": value, "pool": fpm.pool, **_fpm_server(fpm)}
    if php is None:
        return "PHP's configuration files are not known"
    if setting.source == "set" and setting.file and setting.file == php.user_ini:
        return _user_ini(php, value)
    if root and php.php_ini:
        params = {"file": setting.file if setting.source == "set" and setting.file else php.php_ini,
                  "format": "php-ini", "directive": "max_execution_time", "value": value}
        if fpm is not None and fpm.conf:
            params.update(_fpm_server(fpm), server_config=fpm.conf)
        return params
    if php.user_ini or php.docroot:
        return _user_ini(php, value)
    return "neither php.ini (needs root: become: sudo) nor the docroot's .user.ini is known"


def _user_ini(php: PhpSite, value: str) -> dict:
    path = php.user_ini or posixpath.join(php.docroot, ".user.ini")
    return {"file": path, "format": "php-ini", "directive": "max_execution_time", "value": value,
            "validate": "none", "create": True,
            "note": "PHP reads .user.ini again after user_ini.cache_ttl (300 s by default)"}


def _fpm_server(fpm: FpmSite) -> dict:
    master = next((m for m in fpm.masters if m.conf == fpm.conf), None)
    out: dict = {"validate": "php-fpm", "handlers": [{"reload": "php-fpm"}]}
    if master is not None and master.binary:
        out["binary"] = master.binary
    return out


def _manual(facts: TimeoutPlanFacts, layer: Layer, change: dict, why: str) -> dict:
    key = layer.setting.text.split()[0] if layer.setting and layer.setting.text else _KEYS.get(layer.name, layer.name)
    sep = " = " if layer.name in ("max_execution_time", "request_terminate_timeout") else " "
    suffix = "s" if layer.name in ("request_terminate_timeout",) else ""
    where = (f"{change['file']}:{change['line']}" if change["file"] and change["line"] and change["source"] == "set"
             else f"in {change['where']}" if change["where"] else _block(facts, layer.name))
    return {"line": f"{key}{sep}{_int(change['to'])}{suffix}", "where": where, "why": why}


def _block(facts: TimeoutPlanFacts, layer: str) -> str:
    if layer == "request_terminate_timeout" and facts.fpm is not None and facts.fpm.pool:
        return f"in the pool [{facts.fpm.pool}]"
    if layer == "max_execution_time":
        return "in the FPM SAPI's php.ini"
    return "in the site's block"


_KEYS = {"apache_proxy_timeout": "ProxyTimeout", "fcgid_io_timeout": "FcgidIOTimeout",
         "fcgid_busy_timeout": "FcgidBusyTimeout"}


def _bracketed(label: str) -> str | None:
    match = re.search(r"server\[([^\]\s]+)", label)
    return match.group(1) if match else None


def _int(seconds):
    return int(seconds) if float(seconds).is_integer() else seconds


@register
class TimeoutPlan(Rule):
    """The edits that set a consistent timeout chain, where each value is set (or the
    narrowest block that governs the site)."""

    name = "timeout_plan"
    Params = TimeoutPlanFacts

    def evaluate(self, facts: TimeoutPlanFacts) -> list[Finding]:
        plan = plan_edits(facts)
        chain = plan["chain"]
        if plan["after"] is None:
            return [Finding("timeout-plan", Severity.WARNING, f"no chain to set: {chain['proposal_note']}",
                            (Evidence(f"chain now: {plan['before']}"),),
                            "give the longest legitimate script time: --script-time N", family=Family.KILL)]
        evidence = [Evidence(f"before: {plan['before']}"), Evidence(f"after:  {plan['after']}")]
        evidence += [Evidence(f"host's support needed: {m['line']} ({m['where']}): {m['why']}") for m in plan["manual"]]
        if not plan["edits"] and not plan["manual"]:
            summary = f"the timeout chain is already consistent for scripts of up to {chain['script_time']}s"
            return [Finding("timeout-plan", Severity.INFO, summary, tuple(evidence), "nothing to change",
                            family=Family.KILL)]
        sets = ", ".join(f"{e['directive']} {secs(e['from']) if e['from'] is not None else '?'} → {secs(e['to'])}"
                         for e in plan["edits"])
        summary = (f"timeout chain for scripts of up to {chain['script_time']}s: "
                   + (f"{len(plan['edits'])} edit(s): {sets}" if plan["edits"] else "nothing opskit can edit")
                   + (f"; {len(plan['manual'])} for the host to change" if plan["manual"] else ""))
        advice = (f"note: {chain['proposal_note']}; " if chain["proposal_note"] else "") + (
            "ask the host for: " + "; ".join(f"{m['line']} ({m['where']})" for m in plan["manual"])
            if plan["manual"] else "opskit run tune-timeouts applies it, and undoes it unless confirmed")
        severity = Severity.WARNING if plan["manual"] else Severity.INFO
        return [Finding("timeout-plan", severity, summary, tuple(evidence), advice, family=Family.KILL)]

    def value(self, facts: TimeoutPlanFacts) -> dict:
        return plan_edits(facts)


class SupportFacts(BaseModel):
    """host_support: what tune-timeouts could not change itself.

    edits:  config_edits' step value `edits` (each with `needs_host` when the file is not this
            user's to write: {file, line, set, why})
    manual: timeout_plan's `manual` (what opskit does not edit: {layer, line, where, why})
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    edits: tuple[dict, ...] = ()
    manual: tuple[dict, ...] = ()


@register
class HostSupport(Rule):
    """The lines to ask the host for: edits this user may not make, settings opskit does not
    edit. Never a failure: the rest of the chain is set."""

    name = "host_support"
    Params = SupportFacts

    def evaluate(self, facts: SupportFacts) -> list[Finding]:
        asks = []
        for edit in facts.edits:
            need = edit.get("needs_host")
            if not need:
                continue
            at = f"{need['file']}:{need['line']}" if need.get("line") else need["file"]
            verb = "add" if need.get("action") == "add" else "set"
            asks.append(Evidence(f"{verb} `{need['set']}` ({need.get('why', '')})", file=need["file"],
                                 line=need.get("line")) if need.get("line") else
                        Evidence(f"{verb} `{need['set']}` in {at} ({need.get('why', '')})"))
        for item in facts.manual:
            asks.append(Evidence(f"set `{item['line']}` {item['where'] if item['where'].startswith('in ') else 'at ' + item['where']} "
                                 f"({item['why']})"))
        if not asks:
            return []
        return [Finding("timeout-needs-host", Severity.WARNING,
                        f"{len(asks)} timeout setting(s) need the host's support: this user may not change them",
                        tuple(asks),
                        "ask the host (or root) for exactly these lines, then reload the server; "
                        "the rest of the chain is set by opskit", family=Family.KILL)]


class TimingFacts(BaseModel):
    """origin_timing: the http check through the origin before and after the new chain loaded
    (their step values: {verdict, summary, observed: {status, seconds, ...}})."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    before: dict | None = None
    after: dict | None = None
    slower: float = 2.0     # after / before above this (and over a second more) is a warning


@register
class OriginTiming(Rule):
    """Does the site answer through the origin as it did before the change: same status, about
    the same time? A reload that leaves the site much slower is worth a look before confirming."""

    name = "origin_timing"
    Params = TimingFacts

    def evaluate(self, facts: TimingFacts) -> list[Finding]:
        before = (facts.before or {}).get("observed") or {}
        after = (facts.after or {}).get("observed") or {}
        if not before or not after or before.get("seconds") is None or after.get("seconds") is None:
            return []
        b, a = float(before["seconds"]), float(after["seconds"])
        evidence = (Evidence(f"before: HTTP {before.get('status')} in {b:.3f}s"),
                    Evidence(f"after:  HTTP {after.get('status')} in {a:.3f}s"))
        if before.get("status") != after.get("status"):
            return [Finding("origin-changed-by-tuning", Severity.WARNING,
                            f"the origin answered {before.get('status')} before the new timeouts and {after.get('status')} after",
                            evidence, "look at the site before confirming; `opskit rollback RUN` undoes it now",
                            family=Family.ORIGIN)]
        if a > b * facts.slower and a - b > 1:
            return [Finding("origin-slower-after-tuning", Severity.WARNING,
                            f"the origin answers {a / b:.1f}× slower after the new timeouts ({b:.2f}s → {a:.2f}s)",
                            evidence, "a reload restarts PHP's workers and empties opcache: ask again; if it stays slow, "
                                      "`opskit rollback RUN` undoes it", family=Family.ORIGIN)]
        return [Finding("origin-as-before", Severity.INFO,
                        f"the origin answers as before the new timeouts: HTTP {after.get('status')}, {b:.2f}s → {a:.2f}s",
                        evidence, "confirm the run to keep the new chain (opskit confirm RUN)", family=Family.ORIGIN)]
