"""WP-CLI alias files: `~/.wp-cli/config.yml` and a project's `wp-cli.yml`.

WP-CLI's documented shape (https://make.wordpress.org/cli/handbook/guides/running-commands-remotely/):

    @staging:
      ssh: wpcli@staging.wp-cli.org
      user: wpcli                      # the WordPress user (not the SSH one): not used
      path: /srv/www/staging.wp-cli.org
    @production:
      ssh: wpcli@wp-cli.org:2222/srv/www/wp-cli.org
      url: https://wp-cli.org
    @both:
      - @staging
      - @production

Each alias becomes a host named like the alias without '@': `ssh` is
`[user@]host[:port][/path]` (user, address or ssh_alias when ~/.ssh/config has that Host, port,
and the path as wordpress.root unless `path:` says it), `url` is wordpress.url (https:// added
when WP-CLI's url has no scheme). An alias group becomes a group. `--host @staging` selects an
alias, `--host @both` a group. Other WP-CLI settings (path, color, command defaults) are not about
hosts and are left alone. WP-CLI writes `@alias` unquoted, which YAML reserves: it is quoted
before parsing, on the same line, so every error keeps its file:line.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from opskit import located_yaml
from opskit.errors import InputError, InventoryError
from opskit.inventory_sources import Source, connect_fields

_KEY = re.compile(r"^(\s*)@([A-Za-z0-9][\w.-]*)(\s*:)")
_ITEM = re.compile(r"^(\s*-\s+)@([A-Za-z0-9][\w.-]*)(\s*(#.*)?)$")
_FLOW_ITEM = re.compile(r"([\[,]\s*)@([A-Za-z0-9][\w.-]*)")
# [<scheme>:][<user>@]<host>[:<port>][<path>], as WP-CLI documents `ssh:`
_SSH = re.compile(r"^(?:(?P<scheme>[a-z][a-z-]*):(?![0-9/]))?(?:(?P<user>[^@\s/]+)@)?"
                  r"(?P<host>\[[^\]]+\]|[^:/\s]+)(?::(?P<port>[0-9]+))?(?P<path>/\S*)?$")
KNOWN_KEYS = {"ssh", "path", "url", "user", "http", "proxyjump"}


def quote_aliases(text: str) -> str:
    """`@alias` keys and list items quoted for YAML, line for line."""
    out = []
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        end = line[len(body):]
        body = _KEY.sub(r'\1"@\2"\3', body)
        body = _ITEM.sub(r'\1"@\2"\3', body)
        if ":" in body and "[" in body.split(":", 1)[1]:
            head, tail = body.split(":", 1)
            body = head + ":" + _FLOW_ITEM.sub(r'\1"@\2"', tail)
        out.append(body + end)
    return "".join(out)


def _load_text(text: str, file: Path) -> located_yaml.Located:
    """located_yaml.load (its bounded loader, line map and messages) for the quoted text, which has
    the lines of `file`: through a private temporary copy, named `file` in every message."""
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".yml", prefix="opskit-wpcli-") as copy:
        copy.write(text)
        copy.flush()
        try:
            located = located_yaml.load(Path(copy.name), "WP-CLI config")
        except InputError as exc:
            raise InventoryError(str(exc).replace(copy.name, str(file))) from None
    located.file = Path(file)
    return located


def parse_ssh(value: str) -> dict:
    """WP-CLI's `ssh:` → {user, host, port, path}; ValueError with the reason."""
    found = _SSH.match(value.strip())
    if not found:
        raise ValueError(f"not [user@]host[:port][/path]: {value!r}")
    scheme = found.group("scheme")
    if scheme and scheme != "ssh":
        raise ValueError(f"{scheme}: connections are not SSH; opskit reaches sites over SSH only")
    if found.group("host") == "vagrant" and not found.group("user"):
        raise ValueError("vagrant: a Vagrant box; give its address or an ssh_config Host instead")
    return {"user": found.group("user"), "host": found.group("host").strip("[]"),
            "port": int(found.group("port")) if found.group("port") else None, "path": found.group("path")}


def read(file: Path, text: str) -> Source:
    located = _load_text(quote_aliases(text), file)
    data = located.data
    if not isinstance(data, dict):
        raise InventoryError(f"{located.where(())}: a WP-CLI config must be a mapping of @aliases")
    hosts: dict = {}
    lines: dict = {}
    groups: dict = {}
    aliases: dict[str, tuple[str, ...]] = {}
    for key, value in data.items():
        if not (isinstance(key, str) and key.startswith("@")):
            continue   # WP-CLI's own settings: not about hosts
        name = key[1:]
        where = located.where((key,))
        if isinstance(value, list):
            groups[name] = value
            continue
        if not isinstance(value, dict):
            raise InventoryError(f"{where}: {key}: an alias is a mapping (ssh:, path:, url:) or a list of @aliases")
        extra = set(value) - KNOWN_KEYS
        if extra:
            bad = sorted(map(str, extra))[0]
            raise InventoryError(f"{located.where((key, bad))}: {key}.{bad}: not a WP-CLI alias setting "
                                 f"(ssh, path, url, user, http, proxyjump)")
        if not value.get("ssh"):
            raise InventoryError(f"{where}: {key}: no 'ssh:' — opskit works on sites over SSH "
                                 "(ssh: [user@]host[:port][/path])")
        try:
            ssh = parse_ssh(str(value["ssh"]))
        except ValueError as exc:
            raise InventoryError(f"{located.where((key, 'ssh'))}: {key}.ssh: {exc}") from None
        host = connect_fields(ssh["host"], ssh["user"], ssh["port"])
        root = value.get("path") or ssh["path"]
        wordpress = {}
        if root:
            wordpress["root"] = str(root)
            lines[("hosts", name, "wordpress", "root")] = located.line_of((key, "path" if value.get("path") else "ssh"))
        if value.get("url"):
            url = str(value["url"])
            if "://" in url and not re.match(r"^https?://", url):
                raise InventoryError(f"{located.where((key, 'url'))}: {key}.url: must be http:// or https:// (or a bare host name)")
            wordpress["url"] = url if re.match(r"^https?://", url) else f"https://{url}"
            lines[("hosts", name, "wordpress", "url")] = located.line_of((key, "url"))
        if wordpress:
            host["wordpress"] = wordpress
        if value.get("proxyjump"):
            host["proxy_jump"] = str(value["proxyjump"])
        hosts[name] = host
        lines[("hosts", name)] = located.line_of((key,))
        for field in ("address", "ssh_alias", "user", "port"):
            lines[("hosts", name, field)] = located.line_of((key, "ssh"))
        aliases[key] = (name,)
    for name, members in groups.items():
        key = f"@{name}"
        names = []
        for index, member in enumerate(members):
            if not (isinstance(member, str) and member.startswith("@") and member[1:] in hosts):
                choices = ", ".join(f"@{h}" for h in hosts)
                raise InventoryError(f"{located.where((key, index))}: {key}: {member!r} is not an alias of this file "
                                     f"(aliases: {choices})")
            names.append(member[1:])
            lines[("groups", name, "hosts", index)] = located.line_of((key, index))
        groups[name] = {"hosts": names}
        lines[("groups", name)] = located.line_of((key,))
        aliases[key] = tuple(names)
    if not hosts:
        raise InventoryError(f"{file}: no @alias with ssh: in this WP-CLI config")
    aliases.setdefault("@all", tuple(hosts))   # WP-CLI's built-in alias for every alias
    raw = {"groups": groups, "hosts": hosts} if groups else {"hosts": hosts}
    return Source("wp-cli", located_yaml.Located(file, raw, lines), aliases, format="YAML")
