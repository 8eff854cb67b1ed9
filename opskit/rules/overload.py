"""overload: the origin is out of PHP workers, memory or CPU.

    - rule: overload
      with: {fpm_log: "{{ steps.logs.fpm }}", web_log: "{{ steps.logs.web }}",
             pm_max_children: "{{ steps.fpm.pm_max_children }}", load: "{{ steps.system.load }}",
             memory: "{{ steps.system.memory }}"}

Findings, in this order:

    kernel log "Out of memory: Killed process"   error when it killed PHP, the web server or the database
      (dmesg -T; also a memory cgroup's)          (SIGKILL: 502); warning for another process
    php-fpm "server reached pm.max_children"     warning; error when nginx was refused too
      nginx "connect() … (11: Resource            ("connect() … failed (11: …)": the listen backlog
      temporarily unavailable)"                    was full, those requests got 502); php-fpm's
                                                  "executing too slow" lines, when there, show why
    MemAvailable under 10% of MemTotal, or       warning
      more than half the swap in use
    load average above the core count            warning; error above twice the cores

Swap in use with memory to spare is not reported: it is old pages paged out, not a cause.
Linux's load average also counts processes waiting on disk I/O, so a high load with an idle CPU
means slow storage; the advice says so.
"""

from __future__ import annotations

import math
import re

from opskit.findings import Evidence, Family, Finding, Severity
from opskit.rules.facts import LogScan, OverloadFacts, when
from opskit.steps import Rule, register

LOW_MEMORY = 0.10       # MemAvailable under this fraction of MemTotal is low
HEAVY_SWAP = 0.5        # more than this fraction of the swap in use is heavy
HEADROOM = 0.8          # the share of available memory more workers may take


@register
class Overload(Rule):
    """Workers exhausted, memory short, CPU saturated: the origin cannot answer in time."""

    name = "overload"
    Params = OverloadFacts

    def evaluate(self, facts: OverloadFacts) -> list[Finding]:
        return [*_oom(facts), *_workers(facts), *_memory(facts), *_load(facts)]


def _seen(log: LogScan | None, name: str):
    return log.seen(name) if log is not None else None


# what the site's answers need: a kill of one of these is a 502 (or 503) for its visitors
_SITE_PROCESSES = re.compile(r"^(?:php|lsphp|httpd|apache2|nginx|mysqld|mariadbd|memcached|redis-server)", re.I)


def _oom(facts: OverloadFacts) -> list[Finding]:
    found = _seen(facts.kernel_log, "oom-kill")
    if found is None:
        return []
    killed = ", ".join(found.where) or "processes"
    site = any(_SITE_PROCESSES.match(name) for name in found.where)
    if site:
        summary = (f"the kernel ran out of memory and killed {killed} {when(found)}: a PHP worker (or the web server, "
                   "or the database) killed this way exits on SIGKILL and its visitors get a 502")
    else:
        summary = (f"the kernel ran out of memory and killed {killed} {when(found)}: memory is short on this host, "
                   "and PHP workers may be next")
    return [Finding(
        "overload", Severity.ERROR if site else Severity.WARNING, summary,
        (facts.kernel_log.evidence("oom-kill"),),
        "find what took the memory (the killed process is named in the line, with its size); lower pm.max_children "
        "or memory_limit so the workers fit in memory, or give the host (or its memory cgroup) more memory",
        family=Family.OVERLOAD)]


def _workers(facts: OverloadFacts) -> list[Finding]:
    reached = _seen(facts.fpm_log, "fpm-max-children")
    refused = _seen(facts.web_log, "nginx-backlog-full")
    if reached is None and refused is None:
        return []
    evidence, parts = [], []
    if reached is not None:
        evidence.append(facts.fpm_log.evidence("fpm-max-children"))
        size = f" ({reached.limit})" if reached.limit is not None else ""
        parts.append(f"php-fpm reached pm.max_children{size} {when(reached)}")
    if facts.pm_max_children is not None and facts.pm_max_children.value is not None:
        evidence.append(facts.pm_max_children.evidence("pm.max_children"))
    if refused is not None:
        evidence.append(facts.web_log.evidence("nginx-backlog-full"))
        parts.append(f"nginx found php-fpm's queue full {when(refused)} and answered 502")
    slow = _seen(facts.fpm_log, "fpm-slow")
    if slow is not None:
        evidence.append(facts.fpm_log.evidence("fpm-slow"))
        parts.append(f"requests ran past request_slowlog_timeout {when(slow)}")
    return [Finding(
        "overload", Severity.ERROR if refused is not None else Severity.WARNING,
        "the site ran out of PHP workers: " + "; ".join(parts),
        tuple(evidence), _workers_advice(facts), family=Family.OVERLOAD)]


def _workers_advice(facts: OverloadFacts) -> str:
    find = ("find what holds the workers: slow requests (request_slowlog_timeout logs where they wait) or a flood "
            "of requests (the access log: bots, a cache that does not cache)")
    memory = facts.memory
    if memory is not None and _low(memory):
        return f"do not raise pm.max_children: memory is already short; {find}"
    current = _int(facts.pm_max_children.value) if facts.pm_max_children is not None else None
    reached = _seen(facts.fpm_log, "fpm-max-children")
    if current is None and reached is not None:
        current = reached.limit
    if memory is not None and facts.worker_rss_mb is not None:
        room = math.floor(memory.mem_available / 1024 * HEADROOM / facts.worker_rss_mb)
        if room < 1:
            return f"memory has no room for more workers of ~{facts.worker_rss_mb:g} MB; {find}"
        target = f" to {current + room}" if current is not None else f" by up to {room}"
        return (f"memory has room for about {room} more workers of ~{facts.worker_rss_mb:g} MB: raise pm.max_children"
                f"{target} if the requests are legitimate; {find}")
    return f"raise pm.max_children if memory allows (each worker takes its resident size, see ps); {find}"


def _low(memory) -> bool:
    return memory.mem_available < LOW_MEMORY * memory.mem_total


def _memory(facts: OverloadFacts) -> list[Finding]:
    memory = facts.memory
    if memory is None:
        return []
    swap_used = max(memory.swap_total - memory.swap_free, 0)
    heavy = memory.swap_total > 0 and swap_used > HEAVY_SWAP * memory.swap_total
    if not _low(memory) and not heavy:
        return []
    share = memory.mem_available / memory.mem_total
    evidence = [Evidence(f"MemAvailable: {_mb(memory.mem_available)} of {_mb(memory.mem_total)} ({share:.0%})",
                         file="/proc/meminfo")]
    if memory.swap_total:
        evidence.append(Evidence(f"swap in use: {_mb(swap_used)} of {_mb(memory.swap_total)}", file="/proc/meminfo"))
    what = " and ".join(w for w, on in (("memory is short", _low(memory)), ("most of the swap is in use", heavy)) if on)
    return [Finding(
        "overload", Severity.WARNING,
        f"{what}: PHP workers slow down (paging) or get killed, and slow requests hit the timeouts",
        tuple(evidence),
        "find what uses the memory (ps by RSS: PHP workers, the database, caches); fit pm.max_children × the "
        "workers' size in memory, or give the host more memory",
        family=Family.OVERLOAD)]


def _load(facts: OverloadFacts) -> list[Finding]:
    load = facts.load
    if load is None:
        return []
    peak = max(load.load1, load.load5 or 0)
    if peak <= load.cores:
        return []
    averages = " ".join(f"{v:g}" for v in (load.load1, load.load5, load.load15) if v is not None)
    return [Finding(
        "overload", Severity.ERROR if peak > 2 * load.cores else Severity.WARNING,
        f"the host is overloaded: load average {averages} on {load.cores} core{'s' if load.cores > 1 else ''}; "
        "requests wait for the CPU and slow ones hit the timeouts",
        (Evidence(f"load average {averages}, {load.cores} cores", file="/proc/loadavg"),),
        "find what uses the CPU (top; php-fpm's slow log; the access log for floods or bots); Linux's load also "
        "counts processes waiting on the disk, so a high load with an idle CPU means slow storage",
        family=Family.OVERLOAD)]


def _mb(kb: int) -> str:
    return f"{kb / 1024:.0f} MB"


def _int(text: str | None) -> int | None:
    return int(text) if text is not None and text.strip().isdigit() else None
