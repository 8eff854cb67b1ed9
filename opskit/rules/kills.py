"""kill_script: something besides the timeout chain ends PHP workers.

    - rule: kill_script
      with: {fpm_log: "{{ steps.logs.fpm }}", web_log: "{{ steps.logs.web }}",
             cron: "{{ steps.killers.cron }}", csf: "{{ steps.killers.csf }}",
             lve: "{{ steps.killers.lve }}", worker_limits: "{{ steps.killers.limits }}"}

What it concludes, in this order (findings that rest on log lines — kills that happened —
come before those that rest on a configuration that could kill):

    php-fpm log "exited on signal 9 (SIGKILL)"    error: php-fpm's own terminate sends SIGTERM,
                                                  so someone else killed the worker (502)
    more "signal 15 (SIGTERM)" exits than          warning: a kill/pkill (TERM is their default)
      "execution timed out" lines                  or php-fpm restarts
    "signal 24 (SIGXCPU)" exits, or a finite       error / warning: a CPU time limit (RLIMIT_CPU;
      "Max cpu time" in the worker's limits        SIGKILL instead when soft = hard, as ulimit -t sets)
    a crontab line that kills PHP                  error when kills were seen, else warning
    CSF PT_USERKILL = 1                            the same
    CloudLinux LVE                                 warning when kills were seen, else info
    LiteSpeed LSAPI_MAX_PROCESS_TIME               the same
    the web server's reset (nginx "recv() failed   warning: a worker died mid-request and the
      (104 …)", Apache "(104) … AH01075") with      log that says why cannot be read
      the php-fpm log unreadable
"""

from __future__ import annotations

from opskit.findings import Evidence, Family, Finding, Severity
from opskit.rules.facts import CronKill, KillFacts, LogScan, secs, when
from opskit.rules.timeouts import died_under_request
from opskit.steps import Rule, register

_FIND_THE_KILLER = ("look for what kills by age or by name: crontabs and /etc/cron.*, the host's process killer "
                    "(ask the host whether one runs), and the kernel's OOM messages (dmesg)")


@register
class KillScript(Rule):
    """PHP workers ended by something outside the timeout chain: a kill script, CSF/LFD, LVE, a CPU limit."""

    name = "kill_script"
    Params = KillFacts

    def evaluate(self, facts: KillFacts) -> list[Finding]:
        log = facts.fpm_log if facts.fpm_log is not None and facts.fpm_log.readable else None
        sigkill = (log.seen("external-kill") or log.seen("fpm-exit-sigkill")) if log else None
        kill_name = ("external-kill" if log.seen("external-kill") else "fpm-exit-sigkill") if sigkill else None
        sigterm = log.seen("fpm-exit-sigterm") if log else None
        terminated = log.seen("fpm-terminate") if log else None
        if log is not None and log.seen("external-term"):
            extra_term = log.signatures["external-term"].count
        else:
            extra_term = (sigterm.count - (terminated.count if terminated else 0)) if sigterm else 0
        killed = sigkill is not None or extra_term > 0
        suspects = _suspects(facts)
        out = []
        if sigkill is not None:
            out.append(Finding(
                "kill-script", Severity.ERROR,
                f"php-fpm workers were killed with SIGKILL {when(sigkill)}, which php-fpm's own timeout never "
                "sends: something outside php-fpm ended them mid-request and the visitor got a 502",
                (log.evidence(kill_name), *died_under_request(facts.web_log)),
                (f"likely {_or(suspects)} (its own finding says what to do); if that does not explain it, "
                 if suspects else "") + _FIND_THE_KILLER
                + "; a php-fpm reload that outran process_control_timeout also ends in SIGKILL",
                family=Family.KILL))
        if extra_term > 0:
            shown = "external-term" if log.seen("external-term") else "fpm-exit-sigterm"
            evidence = [log.evidence(shown)] + ([log.evidence("fpm-terminate")] if terminated else [])
            out.append(Finding(
                "kill-script", Severity.WARNING,
                f"{extra_term} php-fpm worker{'s' if extra_term > 1 else ''} ended on SIGTERM without php-fpm's "
                f"\"execution timed out\" line ({when(log.signatures[shown])}): a kill or pkill (TERM is their "
                "default signal) or a php-fpm restart",
                (*evidence, *died_under_request(facts.web_log)),
                "if the times line up with php-fpm restarts (its NOTICE lines), nothing is wrong; otherwise "
                + (f"likely {_or(suspects)} (its own finding says what to do); if that does not explain it, "
                   if suspects else "") + _FIND_THE_KILLER,
                family=Family.KILL))
        out += _cpu_limit(facts, log, sigkill is not None)
        out += [_cron(line, killed) for line in facts.cron]
        out += _csf(facts, killed)
        out += _lve(facts, killed)
        out += _lsapi(facts, killed)
        out += _reset_without_log(facts)
        return out


def _suspects(facts: KillFacts) -> list[str]:
    names = [f"the cron job at {c.file}:{c.line}" if c.line else f"the cron job in {c.file}" for c in facts.cron]
    if _userkill(facts):
        names.append("CSF's lfd (PT_USERKILL)")
    if facts.lve is not None and facts.lve.present:
        names.append("CloudLinux LVE's memory limit")
    if facts.lsapi_max_process_time is not None and facts.lsapi_max_process_time.known:
        names.append("LiteSpeed's LSAPI_MAX_PROCESS_TIME")
    if _hard_cpu_limit(facts):
        names.append("the worker's CPU time limit")
    return names


def _userkill(facts: KillFacts) -> bool:
    """PT_USERKILL on: lfd kills the user processes PT_USERTIME (and PT_USERMEM, PT_USERPROC) catch."""
    value = facts.csf.pt_userkill.value if facts.csf is not None and facts.csf.pt_userkill is not None else None
    value = (value or "").strip().strip('"')
    return value.isdigit() and int(value) > 0


def _hard_cpu_limit(facts: KillFacts) -> bool:
    """A CPU limit whose soft value is the hard one: the kernel sends SIGKILL, not SIGXCPU."""
    limits = facts.worker_limits
    return (limits is not None and limits.readable and limits.cpu_soft is not None
            and limits.cpu_hard is not None and limits.cpu_soft >= limits.cpu_hard)


def _cpu_limit(facts: KillFacts, log: LogScan | None, sigkilled: bool) -> list[Finding]:
    sigxcpu = log.seen("fpm-exit-sigxcpu") if log else None
    limits = facts.worker_limits
    limited = limits is not None and limits.readable and limits.cpu_soft is not None
    if sigxcpu is None and not limited:
        return []
    hard = _hard_cpu_limit(facts)
    signal = "SIGKILL" if hard else "SIGXCPU"
    evidence = []
    if sigxcpu is not None:
        evidence.append(log.evidence("fpm-exit-sigxcpu"))
    if limited:
        evidence.append(Evidence(limits.text or f"Max cpu time {secs(limits.cpu_soft)}", file=limits.file))
    limit = f" of {secs(limits.cpu_soft)}" if limited else ""
    worker = f"the PHP worker{' (' + limits.process + ')' if limited and limits.process else ''}"
    if sigxcpu is not None:
        summary = (f"php-fpm workers were ended by a CPU time limit{limit} (SIGXCPU) {when(sigxcpu)}: "
                   "the visitor got a 502")
    else:
        summary = (f"{worker} runs under a CPU time limit{limit} (RLIMIT_CPU): past it the kernel ends the worker "
                   f"with {signal}{' (soft = hard, as ulimit -t sets)' if hard else ''}, a 502")
    seen = sigxcpu is not None or (hard and sigkilled)
    return [Finding(
        "kill-script", Severity.ERROR if seen else Severity.WARNING, summary, tuple(evidence),
        "the limit counts the worker's CPU over all the requests it served, not one request's: remove it from "
        "php-fpm's service (systemd LimitCPU=, ulimit -t in its start script, /etc/security/limits.conf) or raise "
        "it far above max_execution_time; on shared hosting ask the host, or move the site to a plan without it",
        family=Family.KILL)]


def _cron(line: CronKill, killed: bool) -> Finding:
    age = f" older than {secs(line.age)}" if line.age is not None else ""
    signal = f" with signal {line.signal}" if line.signal else ""
    schedule = f" ({line.schedule})" if line.schedule else ""
    if line.users_own():
        advice = ("it is in your own crontab: remove the line (crontab -e)"
                  + (", or raise its age limit above the timeout chain" if line.age is not None else ""))
    else:
        advice = ("it is a system cron job: ask the host (or the server's admin) to exclude this site's PHP workers "
                  "from it" + (" or raise its age limit above the timeout chain" if line.age is not None else ""))
    return Finding(
        "kill-script", Severity.ERROR if killed else Severity.WARNING,
        f"a cron job{schedule} kills PHP processes{age}{signal}"
        + (": php-fpm's log shows workers killed from outside, likely by it" if killed
           else ": a request running when it fires dies with a 502"),
        (Evidence(line.text, file=line.file, line=line.line),),
        advice + "; php-fpm's workers live for many requests, so a killer by age ends busy and idle workers alike",
        family=Family.KILL)


def _csf(facts: KillFacts, killed: bool) -> list[Finding]:
    csf = facts.csf
    if not _userkill(facts):
        return []
    usertime = csf.pt_usertime
    limit = f"{secs(usertime.seconds)} (PT_USERTIME; PT_USERKILL = 1)" if usertime is not None and usertime.known \
        else "PT_USERTIME (PT_USERKILL = 1)"
    evidence = [csf.pt_userkill.evidence("PT_USERKILL")]
    if usertime is not None:
        evidence.append(usertime.evidence("PT_USERTIME", "csf", " = "))
    if csf.pt_skip_http is not None and csf.pt_skip_http.value is not None:
        evidence.append(csf.pt_skip_http.evidence("PT_SKIP_HTTP"))
    return [Finding(
        "kill-script", Severity.ERROR if killed else Severity.WARNING,
        f"CSF's lfd kills user processes that run longer than {limit}: a PHP worker that old dies, and the "
        "request it serves gets a 502",
        tuple(evidence),
        "exclude the PHP workers from lfd's process tracking (an exe: line for the php-fpm binary in "
        "/etc/csf/csf.pignore) or raise PT_USERTIME above the timeout chain, then restart lfd; on shared "
        "hosting ask the host",
        family=Family.KILL)]


def _lve(facts: KillFacts, killed: bool) -> list[Finding]:
    lve = facts.lve
    if lve is None or not lve.present:
        return []
    limits = ", ".join(f"{k} {v}" for k, v in lve.limits.items())
    return [Finding(
        "kill-script", Severity.WARNING if killed else Severity.INFO,
        "the account runs inside a CloudLinux LVE" + (f" ({limits})" if limits else "")
        + ": over its memory limit (PMEM) processes are killed, over its entry-process limit (EP) requests get 508",
        tuple(Evidence(e) for e in lve.evidence),
        "look at the account's faults (lveinfo, or the control panel's Resource Usage page); if they line up with "
        "the errors, ask the host to raise the limit or move the site to a plan or VPS that fits it",
        family=Family.KILL)]


def _lsapi(facts: KillFacts, killed: bool) -> list[Finding]:
    setting = facts.lsapi_max_process_time
    if setting is None or not setting.known:
        return []
    return [Finding(
        "kill-script", Severity.WARNING if killed else Severity.INFO,
        f"LiteSpeed ends PHP requests that run longer than {secs(setting.seconds)} (LSAPI_MAX_PROCESS_TIME)",
        (setting.evidence("LSAPI_MAX_PROCESS_TIME", "LiteSpeed", "="),),
        "keep it above max_execution_time (the external app's environment in LiteSpeed's configuration); on shared "
        "hosting ask the host",
        family=Family.KILL)]


def _reset_without_log(facts: KillFacts) -> list[Finding]:
    fpm = facts.fpm_log
    died = died_under_request(facts.web_log)
    if not died or (fpm is not None and fpm.readable):
        return []
    name = "nginx-upstream-reset" if facts.web_log.seen("nginx-upstream-reset") else "apache-fcgi-reset"
    found = facts.web_log.signatures[name]
    who, code = ("nginx", "502") if name.startswith("nginx") else ("Apache", "503")
    why = f"php-fpm's log {fpm.file} is not readable" if fpm is not None and fpm.file else \
        "php-fpm's log is not readable" if fpm is not None else "php-fpm's log was not read"
    return [Finding(
        "kill-script", Severity.WARNING,
        f"{who} saw php-fpm reset the connection under a request {when(found)}: the worker died and the visitor "
        f"got a {code}; {why}, so whether a timeout or a kill ended it cannot be told",
        tuple(died),
        "read php-fpm's log as a user who may (become), or measure the real kill time "
        "(opskit run check-timeouts --measure)",
        family=Family.KILL)]


def _or(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]
