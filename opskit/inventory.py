"""Load and validate the inventory (client sites), and select hosts from it.

Shape (see inventory.example.yaml for every field):

    defaults: {<host field>: value, ...}          # lowest precedence
    groups:   {NAME: {hosts: [HOST, ...], vars: {<host field>: value}}}
    hosts:    {NAME: {<host field>: value, ...}}  # highest precedence

A host's settings are defaults, then each group it belongs to (in the order
the groups are written), then its own values; mappings merge key by key.
"""

from __future__ import annotations

import copy
import difflib
import fnmatch
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from opskit import located_yaml
from opskit.errors import InventoryError, InputError

DEFAULT_INVENTORY = "inventory.yaml"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")


def check_ip(value: str) -> str:
    """An IP address; an IPv6 zone (fe80::1%eth0) must be a plain interface name."""
    ipaddress.ip_address(value)
    if "%" in value and not re.fullmatch(r"[A-Za-z0-9_.-]+", value.split("%", 1)[1]):
        raise ValueError(f"not a valid IPv6 zone in {value!r}")
    return value


def check_address(value: str) -> str:
    """An IP address or a DNS host name; anything else (spaces, shell text) is refused."""
    try:
        return check_ip(value)
    except ValueError:
        pass
    if not HOSTNAME_RE.fullmatch(value):
        raise ValueError(f"not an IP address or host name: {value!r}")
    return value


def parse_endpoint(value: str, default_port: int) -> tuple[str, int]:
    """'ip' or 'ip:port' or '[v6]:port' → (ip, port). Raises ValueError with the reason."""
    text = str(value)
    if text != text.strip():
        raise ValueError(f"no spaces or newlines around an address: {value!r}")
    host, port = text, default_port
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise ValueError(f"unclosed '[' in {value!r}")
        host, rest = text[1:close], text[close + 1:]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"expected ':port' after ']' in {value!r}")
            port = _port(rest[1:], value)
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        port = _port(port_text, value)
    try:
        check_ip(host)
    except ValueError:
        raise ValueError(f"not an IP address (ip or ip:port): {value!r}") from None
    return host, port


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"bad port in {whole!r} (1-65535)")
    return int(text)


def check_http_url(value: str) -> str:
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
        raise ValueError("must be http:// or https://, a host name and an optional path, without spaces")
    return value


# Numbers are strict: YAML's `true` is not port 1, and `.inf`, `nan` or `1e308` seconds would
# only fail later, inside a socket call. The upper bounds are far beyond any real setting.
Port = Annotated[int, Field(strict=True, ge=1, le=65535)]
Seconds = Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)]

IpText = Annotated[str, AfterValidator(check_ip)]
HttpUrlText = Annotated[str, AfterValidator(check_http_url)]
Endpoint53 = Annotated[str, AfterValidator(lambda v: (parse_endpoint(v, 53), v)[1])]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WordPressSettings(_Strict):
    root: str | None = None          # WordPress root on the host; None → look in the usual places
    url: HttpUrlText | None = None   # public URL of the site; its host name is the Host header for origin checks
    resolve: str | None = None       # ADDRESS[:PORT] to reach wordpress.url at, instead of DNS (like curl --resolve)

    @field_validator("resolve")
    @classmethod
    def _resolve(cls, v: str | None) -> str | None:
        if v is not None:
            parse_endpoint(v, 80)
        return v


class CdnSettings(_Strict):
    provider: str | None = None      # keycdn, cloudflare, bunny, ... (free text, shown in reports)
    hostname: str | None = None      # the CDN hostname asset URLs are rewritten to
    timeout: Annotated[int, Field(strict=True, gt=0, le=86400)] | None = None  # seconds the CDN edge waits for the origin


class TlsSettings(_Strict):
    """How https checks trust the site's certificate (the environment's REQUESTS_CA_BUNDLE or
    SSL_CERT_FILE otherwise; a CA given here wins)."""

    ca_bundle: str | None = None     # PEM file of the CA(s) that signed the site's certificate; ~ is expanded
    verify: Annotated[bool, Field(strict=True)] = True   # false: accept any certificate (reported as a warning)

    @field_validator("ca_bundle")
    @classmethod
    def _expand(cls, v: str | None) -> str | None:
        return None if v is None else os.path.expanduser(v)

    @model_validator(mode="after")
    def _consistent(self) -> "TlsSettings":
        if self.ca_bundle and not self.verify:
            raise ValueError("ca_bundle has no effect with verify: false; keep one of them")
        return self


def _when_text(value: Any) -> Any:
    """A YAML timestamp (2026-12-05 or 2026-12-05T22:00:00Z) arrives as a date/datetime: keep it as
    ISO 8601 text (journals are JSON); text must parse as ISO 8601 too."""
    import datetime

    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, str):
        datetime.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    return value


def _hostname(value: str) -> str:
    if not HOSTNAME_RE.fullmatch(value):
        raise ValueError(f"not a host name: {value!r}")
    return value


HostnameText = Annotated[str, AfterValidator(_hostname)]


class DnsSettings(_Strict):
    domain: str | None = None
    expect: list[IpText] = []        # addresses the domain should resolve to after a move
    old: list[IpText] = []           # addresses of the previous host
    resolvers: list[Endpoint53] = []     # caching resolvers to ask: ip or ip:port
    nameservers: list[Endpoint53] = []   # authoritative servers: ip or ip:port
    # dns-check: the names asked (default: the domain and www.<domain>), the wait for each query,
    # and a planned move (ISO 8601 time, naive = UTC) with the TTL to lower to before it
    names: list[HostnameText] = []
    timeout: Annotated[Seconds, Field(le=60)] = 3.0
    move_at: Annotated[str, BeforeValidator(_when_text)] | None = None
    move_ttl: Annotated[int, Field(strict=True, gt=0, le=86400)] = 300

    # Annotated items (below) make pydantic report the index of the bad entry.


class Host(_Strict):
    """One client site: how to reach its host and what lives there."""

    name: str
    address: str | None = None       # SSH address; or ssh_alias
    ssh_alias: str | None = None     # a Host entry of ssh_config (HostName, Port, User, IdentityFile, ProxyJump)
    ssh_config: str | None = None    # which ssh_config file to read (default ~/.ssh/config)
    port: Port | None = None
    user: str | None = None
    identity_file: str | None = None
    use_agent: bool = True
    password_env: str | None = None      # name of an environment variable holding the SSH password
    passphrase_env: str | None = None    # name of an environment variable holding the key passphrase
    known_hosts: str = "~/.ssh/known_hosts"
    connect_timeout: Annotated[Seconds, Field(le=3600)] = 10.0
    command_timeout: Annotated[Seconds, Field(le=7 * 86400)] = 120.0
    wordpress: WordPressSettings = WordPressSettings()
    origin: HttpUrlText | None = None   # http(s)://ip[:port] where the web server answers directly (https: SNI for wordpress.url)
    cdn: CdnSettings = CdnSettings()
    tls: TlsSettings = TlsSettings()
    dns: DnsSettings = DnsSettings()
    logs: dict[str, str] = {}        # name → log file path on the host
    vars: dict[str, Any] = {}        # free-form values playbooks can refer to as host.vars.NAME
    secret_names: list[str] = []     # more names whose values are masked in diffs (opskit.redact)
    keep_transactions: Annotated[int, Field(strict=True, ge=1, le=1000)] = 20   # finished ones kept on the host
    # root-owned files (/etc/nginx, /etc/php on a VPS): edit, validate, reload and undo them
    # through non-interactive `sudo -n` (never a password); without it only what the login user may
    become: Literal["sudo"] | None = None

    @field_validator("address")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        return None if v is None else check_address(v)

    @field_validator("user", "ssh_alias")
    @classmethod
    def _plain(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z0-9_.][A-Za-z0-9_.@-]*", v):
            raise ValueError(f"not a valid name: {v!r}")
        return v

    @field_validator("password_env", "passphrase_env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v):
            raise ValueError("must be the NAME of an environment variable, not the secret itself")
        return v

    @model_validator(mode="after")
    def _reachable(self) -> "Host":
        if not self.address and not self.ssh_alias:
            raise ValueError("needs 'address' or 'ssh_alias' to be reachable")
        return self

    @property
    def site_hostname(self) -> str | None:
        """The site's host name from wordpress.url (the Host header for origin checks)."""
        if not self.wordpress.url:
            return None
        return re.sub(r"^https?://", "", self.wordpress.url).split("/")[0].split(":")[0]


@dataclass(frozen=True)
class Group:
    name: str
    hosts: tuple[str, ...]


@dataclass(frozen=True)
class Inventory:
    file: Path
    hosts: dict[str, Host]
    groups: dict[str, Group]

    def select(self, patterns: tuple[str, ...] = (), groups: tuple[str, ...] = (), everything: bool = False) -> list[Host]:
        """Hosts named by shell-style patterns and/or groups, in inventory order."""
        if not (patterns or groups or everything):
            raise InputError("no hosts selected: give --host NAME, --group NAME or --all")
        chosen: set[str] = set()
        if everything:
            chosen.update(self.hosts)
        for pattern in patterns:
            matched = fnmatch.filter(self.hosts, pattern)
            if not matched:
                raise InputError(f"no host in {self.file} matches {pattern!r}{_did_you_mean(pattern, self.hosts)}")
            chosen.update(matched)
        for group in groups:
            if group not in self.groups:
                raise InputError(f"no group {group!r} in {self.file}{_did_you_mean(group, self.groups)}")
            chosen.update(self.groups[group].hosts)
        if not chosen:
            raise InputError("the selection matched no hosts")
        return [host for name, host in self.hosts.items() if name in chosen]


def _did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=3)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def resolve_path(cli_value: str | None) -> Path:
    """-i/--inventory, else $OPSKIT_INVENTORY, else ./inventory.yaml."""
    return Path(cli_value or os.environ.get("OPSKIT_INVENTORY") or DEFAULT_INVENTORY)


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load(file: Path) -> Inventory:
    located = located_yaml.load(file, "inventory")
    data = located.data
    if data is None:
        raise InventoryError(f"{file}: the inventory is empty (it needs a 'hosts:' mapping)")
    if not isinstance(data, dict):
        raise InventoryError(f"{located.where(())}: the inventory must be a mapping with 'hosts:'")
    unknown = set(data) - {"defaults", "groups", "hosts"}
    if unknown:
        key = sorted(unknown)[0]
        raise InventoryError(f"{located.where((key,))}: {key}: unknown top-level key (expected defaults, groups, hosts)")
    defaults = _mapping(located, ("defaults",), data.get("defaults"))
    groups_raw = _mapping(located, ("groups",), data.get("groups"))
    hosts_raw = _mapping(located, ("hosts",), data.get("hosts"))
    if not hosts_raw:
        raise InventoryError(f"{located.where(('hosts',))}: hosts: the inventory lists no hosts")

    for name in hosts_raw:
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise InventoryError(f"{located.where(('hosts', name))}: hosts.{name}: host names may use letters, digits, '.', '_' and '-'")

    groups: dict[str, Group] = {}
    group_vars: list[tuple[str, dict, list[str]]] = []
    for gname, graw in groups_raw.items():
        where = ("groups", gname)
        if not isinstance(gname, str) or not NAME_RE.fullmatch(gname):
            raise InventoryError(f"{located.where(where)}: groups.{gname}: group names may use letters, digits, '.', '_' and '-'")
        graw = _mapping(located, where, graw)
        extra = set(graw) - {"hosts", "vars"}
        if extra:
            key = sorted(extra)[0]
            raise InventoryError(f"{located.where(where + (key,))}: groups.{gname}.{key}: unknown field (a group has 'hosts' and 'vars')")
        members = graw.get("hosts") or []
        if not isinstance(members, list):
            raise InventoryError(f"{located.where(where + ('hosts',))}: groups.{gname}.hosts: must be a list of host names")
        for index, member in enumerate(members):
            if member not in hosts_raw:
                raise InventoryError(
                    f"{located.where(where + ('hosts', index))}: groups.{gname}.hosts: unknown host {member!r}"
                    f"{_did_you_mean(str(member), hosts_raw)}"
                )
        groups[gname] = Group(gname, tuple(members))
        group_vars.append((gname, _mapping(located, where + ("vars",), graw.get("vars")), members))

    hosts: dict[str, Host] = {}
    for name, raw in hosts_raw.items():
        own = _mapping(located, ("hosts", name), raw)
        merged = dict(defaults)
        sources: list[tuple[PathKeyT, dict]] = [(("defaults",), defaults)]
        for gname, gvars, members in group_vars:
            if name in members:
                merged = deep_merge(merged, gvars)
                sources.append((("groups", gname, "vars"), gvars))
        merged = deep_merge(merged, own)
        sources.append((("hosts", name), own))
        if "name" in merged:
            raise InventoryError(f"{located.where(('hosts', name, 'name'))}: hosts.{name}.name: the host's name is its key; remove 'name'")
        try:
            hosts[name] = Host(name=name, **merged)
        except ValidationError as exc:
            first = exc.errors()[0]
            base = _source_of(tuple(first["loc"]), sources)
            raise InventoryError(
                located_yaml.describe_pydantic_error(located, base, first)
                + (f" (host {name})" if base[0] != "hosts" else "")
            ) from None
        except TypeError as exc:
            raise InventoryError(f"{located.where(('hosts', name))}: hosts.{name}: {exc}") from None
    return Inventory(Path(file), hosts, groups)


PathKeyT = tuple


def _source_of(loc: tuple, sources: list[tuple[tuple, dict]]) -> tuple:
    """The YAML path prefix (host, group vars or defaults) a merged field came from."""
    # The deepest part of the field's path that some source spells out, last source first:
    # a bad cdn.timeout from group vars is blamed on the group, not on the host's own cdn:.
    for depth in range(len(loc), 0, -1):
        for prefix, values in reversed(sources):
            node: Any = values
            for part in loc[:depth]:
                if isinstance(node, dict) and part in node:
                    node = node[part]
                else:
                    break
            else:
                return prefix
    return sources[-1][0]


def _mapping(located: located_yaml.Located, path: tuple, value: Any) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        dotted = ".".join(map(str, path))
        raise InventoryError(f"{located.where(path)}: {dotted}: must be a mapping, got {type(value).__name__}")
    return value
