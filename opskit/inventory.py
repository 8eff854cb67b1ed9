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
from dataclasses import dataclass, field as dataclass_field
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
    ranges: list[str] = []           # the CDN edge's address ranges besides those opskit ships (diagnose's firewall check)

    @field_validator("ranges")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        import ipaddress

        for text in v:
            try:
                ipaddress.ip_network(text, strict=False)
            except ValueError:
                raise ValueError(f"{text!r} is not an address or network (203.0.113.0/24, 2001:db8::/32)") from None
        return v


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
    ssh_alias: str | None = None     # a Host entry of ssh_config, resolved as `ssh -G` does (opskit.sshconfig)
    ssh_config: str | None = None    # which ssh_config file to read (default ~/.ssh/config and /etc/ssh/ssh_config)
    port: Port | None = None
    user: str | None = None
    identity_file: str | None = None
    use_agent: bool = True
    password_env: str | None = None      # name of an environment variable holding the SSH password
    passphrase_env: str | None = None    # name of an environment variable holding the key passphrase
    known_hosts: str = "~/.ssh/known_hosts"
    connect_timeout: Annotated[Seconds, Field(le=3600)] = 10.0
    # usually from the ssh config (UserKnownHostsFile → known_hosts, ConnectTimeout → connect_timeout, ...)
    identities_only: Annotated[bool, Field(strict=True)] | None = None   # IdentitiesOnly: only identity_file, no agent keys
    proxy_jump: str | None = None        # ProxyJump: [user@]host[:port][,...], each hop read from the ssh config too
    proxy_command: str | None = None     # ProxyCommand (%h %p %r are expanded), when there is no proxy_jump
    strict_host_key_checking: Literal["yes", "ask", "accept-new", "no"] | None = None   # accept-new/no: record unknown keys (changed keys are always refused)
    server_alive_interval: Annotated[int, Field(strict=True, gt=0, le=86400)] | None = None   # ServerAliveInterval: keepalive seconds
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
    # false: no SSH access, only the site's URL: diagnose gives the public half (marked as such)
    # and skips its host-side steps (`when: host.ssh`); a playbook that needs the host cannot run
    ssh: Annotated[bool, Field(strict=True)] = True

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
        if not self.address and not self.ssh_alias and self.ssh:
            raise ValueError("needs 'address' or 'ssh_alias' to be reachable (or ssh: false for a site known by its URL only)")
        if not self.ssh and not self.wordpress.url:
            raise ValueError("ssh: false needs wordpress.url: a site without SSH access is known by its URL")
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
    # where each host's fields came from: field → "host", "group NAME", "defaults" (absent: the default)
    origins: dict[str, dict[str, str]] = dataclass_field(default_factory=dict)
    kind: str = "opskit"          # the source format: opskit, ansible, wp-cli
    aliases: dict[str, tuple[str, ...]] = dataclass_field(default_factory=dict)   # "@name" → hosts (WP-CLI aliases)

    def select(self, patterns: tuple[str, ...] = (), groups: tuple[str, ...] = (), everything: bool = False,
               ssh_config: bool = True) -> list[Host]:
        """Hosts named by shell-style patterns, @aliases and/or groups, in inventory order; with
        `ssh_config`, their ssh config applied (see resolve_ssh)."""
        if not (patterns or groups or everything):
            raise InputError("no hosts selected: give --host NAME, --group NAME or --all")
        chosen: set[str] = set()
        if everything:
            chosen.update(self.hosts)
        for pattern in patterns:
            if pattern.startswith("@") and len(pattern) > 1:
                chosen.update(self._alias(pattern))
                continue
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
        selected = [host for name, host in self.hosts.items() if name in chosen]
        return self.resolve_ssh(selected) if ssh_config else selected

    def _alias(self, word: str) -> tuple[str, ...]:
        """@name: a WP-CLI alias or alias group; in other inventories the host or group `name`."""
        if word in self.aliases:
            return self.aliases[word]
        bare = word[1:]
        if bare in self.hosts:
            return (bare,)
        if bare in self.groups:
            return self.groups[bare].hosts
        choices = list(self.aliases) or [f"@{n}" for n in self.hosts]
        raise InputError(f"no alias {word!r} in {self.file}{_did_you_mean(word, choices)}")

    def resolve_ssh(self, hosts: list[Host]) -> list[Host]:
        """The hosts with their ssh config applied, as `ssh` reads it (one `ssh -G` per name, in
        parallel, cached): a value set on the host itself > the ssh config > groups/defaults.
        An ssh_alias no Host entry matches is an InputError with a did-you-mean."""
        return apply_ssh_config(hosts, self.origins)


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
    """Load and validate an inventory: opskit's own YAML, an Ansible inventory (YAML, INI or any
    inventory plugin, through ansible-inventory) or a WP-CLI alias file, told apart by content
    (opskit.inventory_sources); the others are translated into opskit's shape first."""
    from dataclasses import replace

    from opskit import inventory_sources

    source = inventory_sources.read(Path(file))
    built = build(source.located)
    return replace(built, kind=source.kind, aliases=source.aliases)


def build(located: located_yaml.Located) -> Inventory:
    """Validate an inventory mapping (opskit's shape) whose values' lines `located` knows."""
    file = located.file
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
    origins: dict[str, dict[str, str]] = {}
    for name, raw in hosts_raw.items():
        own = _mapping(located, ("hosts", name), raw)
        merged = dict(defaults)
        sources: list[tuple[PathKeyT, dict]] = [(("defaults",), defaults)]
        origin = {key: "defaults" for key in defaults}
        for gname, gvars, members in group_vars:
            if name in members:
                merged = deep_merge(merged, gvars)
                sources.append((("groups", gname, "vars"), gvars))
                origin.update({key: f"group {gname}" for key in gvars})
        merged = deep_merge(merged, own)
        sources.append((("hosts", name), own))
        origin.update({key: "host" for key in own})
        origins[name] = origin
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
    return Inventory(Path(file), hosts, groups, origins)


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


# -- the ssh config, applied with the inventory's precedence -------------------------------------
SSH_FIELDS = ("address", "port", "user", "identity_file", "identities_only", "proxy_jump", "proxy_command",
              "known_hosts", "strict_host_key_checking", "connect_timeout", "server_alive_interval")


def apply_ssh_config(hosts: list[Host], origins: dict[str, dict[str, str]] | None = None) -> list[Host]:
    """Each host with what its ssh config sets (opskit.sshconfig): a field the host sets itself
    keeps its value, a field from groups/defaults (or unset) takes the ssh config's. `origins`
    is Inventory.origins; without it (hosts read back from a run's journal) only unset fields
    are filled. The connection name is ssh_alias, else address. `origins` gains
    "ssh config FILE" for the fields taken."""
    from opskit import sshconfig

    if any(not (h.ssh_alias or h.address) for h in hosts):   # ssh: false sites have no connection name
        done = iter(apply_ssh_config([h for h in hosts if h.ssh_alias or h.address], origins))
        return [next(done) if h.ssh_alias or h.address else h for h in hosts]
    resolver = sshconfig.resolver()
    # a host reached by URL only (ssh: false) has nothing to resolve
    reached = [h for h in hosts if getattr(h, "ssh", True) and (h.ssh_alias or h.address)]
    requests = {h.name: (h.ssh_alias or h.address, h.ssh_config, bool(h.ssh_alias)) for h in reached}
    found = resolver.resolve_many(list(requests.values()))
    out = []
    for host in hosts:
        if host.name not in requests:
            out.append(host)
            continue
        name, config, is_alias = requests[host.name]
        resolution = found[(name, config)]
        origin = origins.get(host.name) if origins is not None else None
        if origin is None:
            origin = {key: "host" for key in host.model_fields_set if getattr(host, key) is not None}
        own = {key for key, where in origin.items() if where == "host"}
        values = dict(resolution.values)
        if is_alias:
            values.setdefault("address", name)   # no HostName: ssh connects to the alias itself
        update = {key: value for key, value in values.items() if key not in own and getattr(host, key) != value}
        if not update:
            out.append(host)
            continue
        data = host.model_dump()
        data.update(update)
        try:
            out.append(Host(**data))
        except ValidationError as exc:
            first = exc.errors()[0]
            key = str(first["loc"][0]) if first.get("loc") else "?"
            keyword = next((k for k, v in sshconfig.FIELDS.items() if v == key), key)
            raise InventoryError(f"{resolution.label}: {keyword} for {name!r} (host {host.name}): {first.get('msg')}") from None
        origin.update({key: f"ssh config {resolution.label}" for key in update})
    return out


# -- `opskit inventory show` -----------------------------------------------------------------------
SHOW_COLUMNS = ["name", "address", "port", "user", "groups", "ssh_alias", "identity_file", "known_hosts",
                "proxy_jump", "wordpress_root", "from"]


def show_rows(inventory: Inventory, hosts: list[Host]) -> list[dict]:
    """One row per host as opskit will connect to it (after the ssh config), with `from`: where
    each shown value came from (host, group NAME, defaults, ssh config FILE, or default)."""
    import getpass

    rows = []
    for host in hosts:
        origin = inventory.origins.get(host.name, {})
        row = {
            "name": host.name,
            "address": host.address,
            "port": host.port or 22,
            "user": host.user or getpass.getuser(),
            "groups": [g.name for g in inventory.groups.values() if host.name in g.hosts],
            "ssh_alias": host.ssh_alias,
            "identity_file": host.identity_file,
            "known_hosts": host.known_hosts,
            "proxy_jump": host.proxy_jump,
            "wordpress_root": host.wordpress.root,
        }
        where = {}
        for key in ("address", "port", "user", "identity_file", "known_hosts", "proxy_jump", "connect_timeout",
                    "identities_only", "strict_host_key_checking", "server_alive_interval", "ssh_alias"):
            if key in origin:
                where[key] = origin[key]
            elif key in ("port", "user", "known_hosts"):
                where[key] = "default" if key != "user" else "default (the local user)"
        if host.wordpress.root and "wordpress" in origin:
            where["wordpress_root"] = origin["wordpress"]
        row["from"] = where
        rows.append(row)
    return rows
