"""The typed facts the timeout, kill and overload rules read: plain values a probe fills.

Nothing here parses a config or a log: the probes (over opskit/stack/) turn what they read
into these values, and the rules in timeouts.py, kills.py and overload.py draw conclusions.
Models that stand for one probe's value ignore extra keys (a probe may say more than a rule
reads); the Params of each rule forbid them (a playbook typo is caught when it loads).

    Setting(seconds=300, raw="300", source="set", file="/etc/php/8.2/fpm/pool.d/www.conf",
            line=412, where="[www]")                     # request_terminate_timeout = 300
    Setting(seconds=60, raw="60s", source="default")      # fastcgi_read_timeout, set nowhere
    Setting(source="unknown", reason="/etc/nginx is not readable by site1")

    LogScan(file="/var/log/php8.2-fpm.log", signatures={
        "fpm-exit-sigkill": LogSignature(count=3, first="2026-12-01T10:15:02", last="2026-12-01T11:40:19",
            sample="[01-Dec-2026 11:40:19] WARNING: [pool www] child 1235 exited on signal 9 (SIGKILL) "
                   "after 4.2 seconds from start")})

Log signatures: the keys of LogScan.signatures are opskit.stack.logs' signature names (its
SignatureCount.to_json() is a LogSignature); a name the rules do not know is ignored:

    php-fpm log
      fpm-terminate         "execution timed out (N sec), terminating": request_terminate_timeout
      fpm-exit-sigterm      "exited on signal 15 (SIGTERM)": after fpm-terminate, or a kill/pkill
      fpm-exit-sigkill      "exited on signal 9 (SIGKILL)": php-fpm's terminate never sends it
      fpm-exit-sigxcpu      "exited on signal 24 (SIGXCPU)": RLIMIT_CPU's soft limit
      fpm-max-children      "server reached pm.max_children setting (N)" (ondemand: "max_children")
      fpm-slow              "executing too slow": a request past request_slowlog_timeout
      external-kill, external-term
                            optional: SIGKILL / SIGTERM exits with no "execution timed out" of the
                            same pool and pid before them (opskit.stack.logs.child_exits' causes);
                            without them the rules count fpm-exit-* against fpm-terminate
    web server error log (the origin's nginx or Apache, or the edge proxy's nginx)
      nginx-upstream-reset  "recv() failed (104: Connection reset by peer) while reading response
                            header from upstream": the PHP worker died under the request (502)
      apache-fcgi-reset     mod_proxy_fcgi's "(104)Connection reset by peer: … AH01075" (503)
      nginx-upstream-timeout "upstream timed out (110: Connection timed out) while reading response
                            header from upstream" (504); the upstream it names (fastcgi:// or
                            http://) says which timeout: fastcgi_read_timeout or proxy_read_timeout
      apache-fcgi-timeout   mod_proxy_fcgi's "(70007)The timeout specified has expired: … AH01075" (504)
      nginx-backlog-full    "connect() to unix:… failed (11: Resource temporarily unavailable)":
                            php-fpm's listen queue is full (502)
    kernel log (`dmesg -T`, read by log_scan as `kernel`; root only where kernel.dmesg_restrict is 1)
      oom-kill              "Out of memory: Killed process N (php-fpm…)", or "Memory cgroup out of memory: …"
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from opskit.duration import parse_duration
from opskit.findings import Evidence

Source = Literal["set", "inherited", "default", "unknown"]


def _seconds(value):
    """A duration from the inventory or the command line: 100, 100.0, "100s", "2m"."""
    if value is None or isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return float(value) if value.replace(".", "", 1).isdigit() else parse_duration(value)
        except ValueError as exc:
            raise ValueError(str(exc)) from None
    return value


# -- values read from a config ------------------------------------------------

class Setting(BaseModel):
    """One timeout as configured, with where it comes from.

    seconds: the value in seconds (0 keeps its software's meaning: off for
             request_terminate_timeout and max_execution_time); None when unknown
    raw:     as written ("60s", "1m", "0"), or the default's text
    source:  set (in the block/pool/section asked about), inherited (from an enclosing
             block), default (set nowhere: the software's default), unknown (not readable)
    file, line: where it is set (None for a default or unknown)
    where:   the block path, pool or section ("http > server[site.test] > location ~ \\.php$", "[www]")
    text:    the line as written, when the key differs from the layer's name
             ("php_admin_value[max_execution_time] = 300", "ProxySet timeout=300")
    reason:  why it is unknown ("/etc/php/8.2/fpm is not readable by site1")
    """

    model_config = ConfigDict(extra="ignore", frozen=True)
    seconds: float | None = Field(default=None, ge=0)
    raw: str | None = None
    source: Source = "unknown"
    file: str | None = None
    line: int | None = None
    where: str | None = None
    text: str | None = None
    reason: str | None = None

    @property
    def known(self) -> bool:
        return self.source != "unknown" and self.seconds is not None

    def evidence(self, key: str, default_of: str, sep: str = " ") -> Evidence:
        """Evidence for this setting: `key` as its software writes it, `sep` between key and
        value (" " for nginx and Apache, " = " for ini files), `default_of` whose default it is."""
        if not self.known:
            return Evidence(f"{key}: unknown" + (f" ({self.reason})" if self.reason else ""))
        value = self.raw if self.raw is not None else secs(self.seconds)
        if self.source == "default":
            return Evidence(f"{key}: not set, {default_of}'s default {value}")
        text = self.text or f"{key}{sep}{value}"
        if self.where:
            text += f" ({'inherited from ' if self.source == 'inherited' else 'in '}{self.where})"
        return Evidence(text, file=self.file, line=self.line)


class ConfigValue(BaseModel):
    """Any other value read from a config (pm.max_children, PT_USERKILL): as written, with where."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    value: str | None = None        # None: unknown
    source: Source = "set"
    file: str | None = None
    line: int | None = None
    text: str | None = None         # the line as written

    def evidence(self, key: str) -> Evidence:
        return Evidence(self.text or f"{key} = {self.value}", file=self.file, line=self.line)


# -- what the logs say ----------------------------------------------------------

class LogSignature(BaseModel):
    """One signature counted in the tail of a log (opskit.stack.logs.SignatureCount's JSON).

    count:       how many lines matched in what was read
    first, last: their times ("2026-12-01T10:15:02", or as the log writes them)
    sample:      one matching line verbatim (the newest)
    file:        the log it was read from (None: LogScan.file); "source" in stack.logs
    line:        the sample's line number in that file, when known (a tail read rarely knows it)
    where:       the pools, upstreams or sockets the lines name ("www", "fastcgi://unix:/run/php/php8.2-fpm.sock:")
    seconds:     (lowest, highest) N seconds the lines give ("execution timed out (N sec)")
    limit:       pm.max_children as the last line gives it
    """

    model_config = ConfigDict(extra="ignore", frozen=True)
    count: int = Field(ge=0)
    first: str | None = None
    last: str | None = None
    sample: str | None = None
    file: str | None = Field(default=None, validation_alias=AliasChoices("file", "source"))
    line: int | None = None
    where: tuple[str, ...] = ()
    seconds: tuple[float, float] | None = None
    limit: int | None = None


class LogScan(BaseModel):
    """What the last part of one log says.

    file:       the log's path
    readable:   False when this user could not read it (reason says why); nothing is concluded then
    reason:     "Permission denied", "no such file", "not found in the configs"
    bytes_read: how much of its tail was read (the count covers that part only)
    signatures: {signature name: LogSignature} for the signatures seen (see the module's list)
    """

    model_config = ConfigDict(extra="ignore", frozen=True)
    file: str | None = None
    readable: bool = True
    reason: str | None = None
    bytes_read: int | None = None
    signatures: dict[str, LogSignature] = Field(default_factory=dict)

    def seen(self, name: str) -> LogSignature | None:
        """The signature when this log is readable and has at least one such line."""
        found = self.signatures.get(name) if self.readable else None
        return found if found is not None and found.count > 0 else None

    def evidence(self, name: str) -> Evidence:
        found = self.signatures[name]
        return Evidence(found.sample or f"{found.count} × {name}", file=found.file or self.file, line=found.line)


def when(found: LogSignature) -> str:
    """'3 times between 10:15 and 11:40', 'once (10:15)' for a summary."""
    if found.count == 1:
        return f"once ({found.last or found.first})" if (found.last or found.first) else "once"
    if found.first and found.last and found.first != found.last:
        return f"{found.count} times between {found.first} and {found.last}"
    return f"{found.count} times" + (f" at {found.last or found.first}" if found.last or found.first else "")


def secs(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    return f"{int(seconds)}s" if float(seconds).is_integer() else f"{seconds:g}s"


# -- the timeout chain ------------------------------------------------------------

ServedBy = Literal["nginx", "apache-proxy-fcgi", "apache-fcgid"]


class TimeoutChain(BaseModel):
    """The timeouts a slow PHP request passes through, inner to outer, for one site.

        max_execution_time         PHP for the FPM SAPI (the value that wins: php.ini, the pool's
                                   php_admin_value, .user.ini); CPU time on Linux; 0 = no limit
        request_terminate_timeout  the php-fpm pool's (0 = off); None: php-fpm does not serve the
                                   site (mod_fcgid, mod_php)
        fastcgi_read_timeout       nginx → php-fpm, for the site's PHP location; None: nginx does
                                   not pass the site's PHP to FastCGI
        apache_proxy_timeout       Apache mod_proxy_fcgi → php-fpm: ProxyTimeout (or the worker's
                                   ProxySet/ProxyPassMatch timeout=); when it is a default, Apache
                                   uses Timeout
        apache_timeout             Apache's Timeout
        fcgid_io_timeout           mod_fcgid FcgidIOTimeout (default 40)
        fcgid_busy_timeout         mod_fcgid FcgidBusyTimeout (default 300): the process killer
                                   behind it, checked every FcgidBusyScanInterval (120 s)
        proxy_read_timeout         a reverse proxy in front (edge nginx) → the origin, if any
        cdn_timeout, cdn_name      the CDN's read timeout from the inventory (Cloudflare: 100)
        served_by                  which web server passes the site's PHP on; None: decided from
                                   which settings are given (fastcgi_read_timeout → nginx,
                                   fcgid_* → apache-fcgid, apache_* → apache-proxy-fcgi)
        script_time                the longest legitimate script in seconds (tune-timeouts'
                                   --script-time); None: the current max_execution_time
        margin                     seconds between two layers of the proposed chain (whole
                                   seconds: rounded up)
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_execution_time: Setting
    request_terminate_timeout: Setting | None
    fastcgi_read_timeout: Setting | None = None
    apache_proxy_timeout: Setting | None = None
    apache_timeout: Setting | None = None
    fcgid_io_timeout: Setting | None = None
    fcgid_busy_timeout: Setting | None = None
    proxy_read_timeout: Setting | None = None
    cdn_timeout: float | None = Field(default=None, gt=0)
    cdn_name: str | None = None
    served_by: ServedBy | None = None
    script_time: float | None = Field(default=None, gt=0)
    margin: float = Field(default=5, ge=1, le=600)

    @field_validator("cdn_timeout", "script_time", mode="before")
    @classmethod
    def _durations(cls, value):
        return _seconds(value)

    def web_server(self) -> ServedBy | None:
        if self.served_by is not None:
            return self.served_by
        if self.fastcgi_read_timeout is not None:
            return "nginx"
        if self.fcgid_io_timeout is not None or self.fcgid_busy_timeout is not None:
            return "apache-fcgid"
        if self.apache_proxy_timeout is not None or self.apache_timeout is not None:
            return "apache-proxy-fcgi"
        return None


# -- the rules' other facts ---------------------------------------------------------

class FpmTimeoutFacts(BaseModel):
    """fpm_timeout: php-fpm's own terminate timeout ending requests.

    fpm_log:                   the pool's php-fpm error log (fpm-terminate, fpm-exit-sigterm)
    web_log:                   the origin web server's error log (nginx-upstream-reset, apache-fcgi-reset:
                               what the visitor got)
    request_terminate_timeout: the pool's setting
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    fpm_log: LogScan | None = None
    web_log: LogScan | None = None
    request_terminate_timeout: Setting | None = None


class GatewayFacts(BaseModel):
    """gateway_timeout: a web server giving up waiting for the upstream's response header (504).

    origin_log:           the origin web server's error log (nginx-upstream-timeout, apache-fcgi-timeout)
    edge_log:             the edge proxy's nginx error log, when there is one
    fastcgi_read_timeout: the origin's setting for the site's PHP location
    apache_proxy_timeout: Apache's effective ProxyTimeout (else its Timeout), when Apache serves PHP
    proxy_read_timeout:   the proxy's setting (the edge's; or the origin's when nginx proxies
                          to Apache on the same host, as Plesk does)
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    origin_log: LogScan | None = None
    edge_log: LogScan | None = None
    fastcgi_read_timeout: Setting | None = None
    apache_proxy_timeout: Setting | None = None
    proxy_read_timeout: Setting | None = None


class CronKill(BaseModel):
    """A crontab line that kills PHP processes (kill/pkill/killall of php, or by age);
    opskit.stack.crontab.KillLine's JSON.

    file:     /var/spool/cron/crontabs/site1, /etc/cron.d/killphp, /etc/cron.hourly/x, "crontab -l"
    line:     its line number there
    text:     the line (or its command) verbatim; "command" in stack.crontab
    schedule: "*/5 * * * *", "@hourly"; None for a script outside the cron.* folders
    age:      the age in seconds past which it kills, when the line says (pkill --older 300,
              killall --older-than 5m, ps etimes > 300); "age_seconds" in stack.crontab
    signal:   the signal it sends, as written ("9", "KILL"; "TERM" is the tools' default)
    user:     the user it runs as (the user field of /etc/crontab and /etc/cron.d)
    own:      True for the SSH user's own crontab (they may edit it), False for a system one;
              None: from the path (/var/spool/cron/… or "crontab -l" is the user's own)
    """

    model_config = ConfigDict(extra="ignore", frozen=True)
    file: str
    line: int | None = None
    text: str = Field(validation_alias=AliasChoices("text", "command"))
    schedule: str | None = None
    age: float | None = Field(default=None, ge=0, validation_alias=AliasChoices("age", "age_seconds"))
    signal: str | None = None
    user: str | None = None
    own: bool | None = None

    def users_own(self) -> bool:
        if self.own is not None:
            return self.own
        return self.file.startswith("/var/spool/cron") or self.file.startswith("crontab")


class Csf(BaseModel):
    """CSF/LFD's process tracking (csf.conf): PT_USERKILL = "1" makes lfd kill user processes
    that run longer than PT_USERTIME seconds (checked every PT_INTERVAL)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    pt_userkill: ConfigValue | None = None
    pt_usertime: Setting | None = None
    pt_skip_http: ConfigValue | None = None


class Lve(BaseModel):
    """CloudLinux LVE: present when /proc/lve exists or the kernel's name says lve.

    evidence: what showed it, verbatim ("/proc/lve/list", "uname -r: 4.18.0-513.9.1.lve.el8.x86_64")
    limits:   the account's limits when readable ({"PMEM": "1024M", "EP": "20", "SPEED": "100%"})
    """

    model_config = ConfigDict(extra="ignore", frozen=True)
    present: bool
    evidence: tuple[str, ...] = ()
    limits: dict[str, str] = Field(default_factory=dict)


class WorkerLimits(BaseModel):
    """The PHP worker's own limits (/proc/<pid>/limits of a php-fpm child, not the SSH shell's).

    readable: False when no worker's limits could be read (reason)
    cpu_soft, cpu_hard: "Max cpu time" in seconds; None: unlimited. At the soft limit the kernel
              sends SIGXCPU, unless it equals the hard one (what `ulimit -t N` sets): then SIGKILL
    text:     the "Max cpu time" line verbatim
    file:     /proc/<pid>/limits
    process:  which process ("php-fpm: pool www")
    """

    model_config = ConfigDict(extra="ignore", frozen=True)
    readable: bool = True
    reason: str | None = None
    cpu_soft: float | None = Field(default=None, ge=0)
    cpu_hard: float | None = Field(default=None, ge=0)
    text: str | None = None
    file: str | None = None
    process: str | None = None


class KillFacts(BaseModel):
    """kill_script: something outside the timeout chain ends PHP workers.

    fpm_log:       the php-fpm error log (fpm-exit-sigkill, fpm-exit-sigterm, fpm-terminate, fpm-exit-sigxcpu,
                   external-kill, external-term)
    web_log:       the origin web server's error log (nginx-upstream-reset, apache-fcgi-reset: a worker
                   died under a request)
    cron:          crontab lines that kill PHP processes
    csf:           CSF/LFD's process tracking, when csf.conf was readable
    lve:           CloudLinux LVE
    worker_limits: a PHP worker's /proc/<pid>/limits
    lsapi_max_process_time: LiteSpeed's LSAPI_MAX_PROCESS_TIME, when LiteSpeed runs the PHP
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    fpm_log: LogScan | None = None
    web_log: LogScan | None = None
    cron: tuple[CronKill, ...] = ()
    csf: Csf | None = None
    lve: Lve | None = None
    worker_limits: WorkerLimits | None = None
    lsapi_max_process_time: Setting | None = None


class Load(BaseModel):
    """/proc/loadavg and the core count."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    load1: float = Field(ge=0)
    load5: float | None = Field(default=None, ge=0)
    load15: float | None = Field(default=None, ge=0)
    cores: int = Field(ge=1)


class Memory(BaseModel):
    """/proc/meminfo, in kB."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    mem_total: int = Field(gt=0)
    mem_available: int = Field(ge=0)
    swap_total: int = Field(default=0, ge=0)
    swap_free: int = Field(default=0, ge=0)


class OverloadFacts(BaseModel):
    """overload: the origin is out of PHP workers, CPU or memory.

    fpm_log:         fpm-max-children, fpm-slow
    web_log:         nginx-backlog-full (requests refused for want of a worker)
    kernel_log:      oom-kill
    pm_max_children: the pool's pm.max_children
    load, memory:    the host's
    worker_rss_mb:   the PHP workers' average resident memory, when measured (sizes the advice)
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    fpm_log: LogScan | None = None
    web_log: LogScan | None = None
    kernel_log: LogScan | None = None
    pm_max_children: ConfigValue | None = None
    load: Load | None = None
    memory: Memory | None = None
    worker_rss_mb: float | None = Field(default=None, gt=0)
