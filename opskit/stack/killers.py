"""What besides php-fpm can kill a PHP worker: CSF/lfd's process tracking, LiteSpeed's
LSAPI_MAX_PROCESS_TIME, CloudLinux LVE, and the worker's own RLIMIT_CPU as
/proc/<pid>/limits shows it.

    csf = parse_csf(csf_conf_text)
    csf.kills_after                          # 1800: PT_USERKILL on, PT_USERTIME 1800 s (None: lfd kills nothing)
    limits = parse_proc_limits(limits_text)  # /proc/<php-fpm worker pid>/limits
    cpu = limits["Max cpu time"]
    cpu.soft, cpu.hard, cpu_limit_signal(cpu)  # (1, 1, 'SIGKILL')
    cloudlinux("4.18.0-553.lve.el8.x86_64", proc_lve=False).present   # True

Pure parsers of the text the probes read (csf.conf, LiteSpeed's config or environment
lines, `uname -r`, `test -e /proc/lve`, /proc/<pid>/limits).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

# -- CSF / lfd --------------------------------------------------------------------

# csf.conf lines are `NAME = "value"`; these are the process-tracking settings that decide a kill.
CSF_KEYS = ("PT_USERKILL", "PT_USERTIME", "PT_USERKILL_ALERT", "PT_USERMEM", "PT_USERPROC", "PT_INTERVAL",
            "PT_LIMIT", "PT_SKIP_HTTP", "PT_ALL_USERS", "PT_USER_ACTION")
_CSF_LINE = re.compile(r'^\s*([A-Z][A-Z0-9_]*)\s*=\s*"([^"]*)"')


@dataclass(frozen=True)
class CsfSetting:
    name: str
    value: str
    file: str
    line: int


@dataclass(frozen=True)
class CsfSettings:
    file: str
    settings: dict[str, CsfSetting]      # the PT_* settings of CSF_KEYS found, by name (the last one wins)

    def number(self, name: str) -> int | None:
        setting = self.settings.get(name)
        return int(setting.value) if setting is not None and setting.value.strip().isdigit() else None

    @property
    def userkill(self) -> bool:
        """PT_USERKILL: lfd kills the user processes PT_USERTIME/PT_USERMEM/PT_USERPROC catch."""
        return (self.number("PT_USERKILL") or 0) > 0

    @property
    def kills_after(self) -> int | None:
        """The age in seconds past which lfd kills a user process (a PHP worker running as
        the site's user is one), checked every PT_INTERVAL seconds; None when it does not."""
        usertime = self.number("PT_USERTIME")
        return usertime if self.userkill and usertime else None

    @property
    def skips_web_server(self) -> bool:
        """PT_SKIP_HTTP = 1: lfd leaves the web server's processes alone."""
        return (self.number("PT_SKIP_HTTP") or 0) > 0

    def to_json(self) -> dict:
        return {"file": self.file, "settings": {k: asdict(v) for k, v in self.settings.items()},
                "userkill": self.userkill, "kills_after": self.kills_after}


def parse_csf(text: str, file: str = "/etc/csf/csf.conf") -> CsfSettings:
    settings: dict[str, CsfSetting] = {}
    for number, line in enumerate(text.split("\n"), 1):
        match = _CSF_LINE.match(line)
        if match and match.group(1) in CSF_KEYS:
            settings[match.group(1)] = CsfSetting(match.group(1), match.group(2), file, number)
    return CsfSettings(file, settings)


# -- LiteSpeed ----------------------------------------------------------------------

# LiteSpeed's documented default: in self-managed mode (LSAPI_CHILDREN > 1) the lsphp parent
# kills a child whose request runs longer than this.
LSAPI_DEFAULT_MAX_PROCESS_TIME = 3600
_LSAPI = re.compile(r"(?<![A-Za-z0-9_])(LSAPI_MAX_PROCESS_TIME|LSAPI_CHILDREN|PHP_LSAPI_CHILDREN|LSAPI_MAX_IDLE)"
                    r"\s*(?:=|\s)\s*[\"']?(\d+)")


@dataclass(frozen=True)
class LsapiSetting:
    name: str
    value: int
    file: str
    line: int
    text: str            # the line, as written

    def to_json(self) -> dict:
        return asdict(self)


def parse_lsapi(text: str, file: str) -> tuple[LsapiSetting, ...]:
    """LSAPI_* environment settings in any of the forms they are written: `env
    LSAPI_MAX_PROCESS_TIME=300` (httpd_config.conf), `<env>LSAPI_MAX_PROCESS_TIME=300</env>`
    (httpd_config.xml), `export LSAPI_MAX_PROCESS_TIME=300`, `SetEnv LSAPI_MAX_PROCESS_TIME 300`.
    Commented lines (#) are left out."""
    found = []
    for number, line in enumerate(text.split("\n"), 1):
        if line.lstrip().startswith("#"):
            continue
        for match in _LSAPI.finditer(line):
            found.append(LsapiSetting(match.group(1), int(match.group(2)), file, number, line.strip()))
    return tuple(found)


def lsapi_max_process_time(settings: tuple[LsapiSetting, ...]) -> tuple[int, LsapiSetting | None]:
    """(seconds, the setting) of LSAPI_MAX_PROCESS_TIME: the last one, else LiteSpeed's default."""
    found = [s for s in settings if s.name == "LSAPI_MAX_PROCESS_TIME"]
    return (found[-1].value, found[-1]) if found else (LSAPI_DEFAULT_MAX_PROCESS_TIME, None)


# -- CloudLinux ---------------------------------------------------------------------

@dataclass(frozen=True)
class CloudLinux:
    kernel_release: str
    lve_kernel: bool     # "lve" in `uname -r` (CloudLinux kernels: 4.18.0-553.lve.el8, 3.10.0-962.3.2.lve1.5.24.el7)
    proc_lve: bool       # /proc/lve exists (the LVE module is loaded)

    @property
    def present(self) -> bool:
        return self.lve_kernel or self.proc_lve

    def to_json(self) -> dict:
        return {**asdict(self), "present": self.present}


def cloudlinux(kernel_release: str, proc_lve: bool) -> CloudLinux:
    release = kernel_release.strip()
    return CloudLinux(release, re.search(r"(?:^|[.\-_])lve", release) is not None, proc_lve)


# -- /proc/<pid>/limits --------------------------------------------------------------

@dataclass(frozen=True)
class ProcLimit:
    name: str               # "Max cpu time"
    soft: int | None        # None: unlimited
    hard: int | None
    units: str              # "seconds", "bytes", "" (priorities have none)

    def to_json(self) -> dict:
        return asdict(self)


def parse_proc_limits(text: str) -> dict[str, ProcLimit]:
    """{limit name: ProcLimit} from /proc/<pid>/limits. The kernel pads the columns to
    the header's widths ("Limit" 26, "Soft Limit" 21, "Hard Limit" 21, then "Units")."""
    lines = [line for line in text.split("\n") if line.strip()]
    if not lines or not lines[0].startswith("Limit"):
        raise ValueError("not /proc/<pid>/limits: no 'Limit ... Soft Limit ... Hard Limit' header")
    header = lines[0]
    soft_at, hard_at, units_at = header.index("Soft Limit"), header.index("Hard Limit"), header.index("Units")
    limits = {}
    for line in lines[1:]:
        name = line[:soft_at].strip()
        limits[name] = ProcLimit(name, _limit(line[soft_at:hard_at]), _limit(line[hard_at:units_at]),
                                 line[units_at:].strip())
    return limits


def _limit(text: str) -> int | None:
    text = text.strip()
    return None if text == "unlimited" else int(text)


def cpu_limit_signal(limit: ProcLimit) -> str | None:
    """What RLIMIT_CPU sends when the worker's CPU time runs out: SIGKILL when the soft limit
    equals the hard one (the kernel checks the hard limit first; `ulimit -t N` sets both),
    SIGXCPU when it is lower; None when unlimited. Both seen for real: tests/captures/
    php-fpm-8.2-debian12/logs/cpu-limit-hard and cpu-limit."""
    if limit.soft is None:
        return None
    return "SIGKILL" if limit.hard is not None and limit.soft >= limit.hard else "SIGXCPU"
