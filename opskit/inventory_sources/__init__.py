"""Inventories admins already have, read into opskit's inventory shape.

`read(file)` tells the format by content and returns a Source: the raw mapping opskit's loader
validates (`defaults`/`groups`/`hosts`, opskit.inventory.build), with the source file's line of
every value, so a bad value is reported at the file:line where the admin wrote it:

- opskit's own YAML (opskit.located_yaml);
- Ansible inventories, YAML or INI or any inventory plugin (ansible.py, through Ansible's own
  `ansible-inventory --list`);
- WP-CLI alias files, `~/.wp-cli/config.yml` and `wp-cli.yml` (wpcli.py);

and `from_ssh_config` makes one from the concrete Host entries of an ssh_config.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from opskit import located_yaml
from opskit.errors import InputError, InventoryError

KINDS = ("opskit", "ansible", "wp-cli")

_INI_SECTION = re.compile(r"^\[[\w.:-]+\]?\s*$", re.MULTILINE)   # [group], [group:vars] (or a typo'd [group)
_WPCLI_ALIAS = re.compile(r"""^["']?@[A-Za-z0-9][\w.-]*["']?\s*:""", re.MULTILINE)


@dataclass
class Source:
    kind: str                       # one of KINDS
    located: located_yaml.Located   # data: the raw opskit-shaped mapping; lines: where each value was written
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)   # "@alias" → host names (WP-CLI)
    format: str = ""                # a detail for messages: "INI", "YAML", "plugin"

    @property
    def raw(self) -> dict:
        return self.located.data


def _read_text(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"inventory file not found: {file}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read inventory file {file}: {exc}") from None


def detect(text: str, data=None, parsed: bool = True) -> str:
    """The kind of inventory in `text`; `data` is its YAML when it `parsed`.

    WP-CLI: a top-level `@alias:` key. Ansible: an INI `[group]` header in a file that is not a
    YAML mapping; a YAML mapping with `plugin:` (an inventory plugin's config); or one whose
    top-level values are all groups (`hosts`, `children`, `vars` only) and that has none of
    opskit's keys. Anything else is opskit's own (and its loader says what is wrong with it)."""
    if _WPCLI_ALIAS.search(text):
        return "wp-cli"
    if isinstance(data, dict) and parsed:
        if "plugin" in data:
            return "ansible"
        if data and not set(data) & {"defaults", "groups", "hosts"} and all(
                value is None or (isinstance(value, dict) and set(value) <= {"hosts", "children", "vars"})
                for value in data.values()):
            return "ansible"
        return "opskit"
    return "ansible" if _INI_SECTION.search(text) else "opskit"


def read(file: Path) -> Source:
    text = _read_text(file)
    located, error = None, None
    if not _WPCLI_ALIAS.search(text):
        try:
            located = located_yaml.load(file, "inventory")
        except InputError as exc:
            error = exc
    kind = detect(text, located.data if located else None, located is not None)
    if kind == "wp-cli":
        from opskit.inventory_sources import wpcli

        return wpcli.read(file, text)
    if kind == "ansible":
        from opskit.inventory_sources import ansible

        data = located.data if located else None
        return ansible.read(file, text, "plugin" if isinstance(data, dict) and "plugin" in data
                            else "YAML" if isinstance(data, dict) else "INI")
    if error is not None:
        raise error
    return Source("opskit", located)


def connect_fields(name: str, user: str | None = None, port=None) -> dict:
    """How to reach a host another tool names `name` (a DNS name, an IP or a Host entry of the
    ssh config, which that tool's ssh would apply): ssh_alias when a concrete Host entry of
    ~/.ssh/config matches it (so its HostName is used), else address."""
    out: dict = {"ssh_alias" if name in _user_host_entries() else "address": name}
    if user:
        out["user"] = user
    if port is not None:
        out["port"] = port
    return out


_host_entries: set[str] | None = None


def _user_host_entries() -> set[str]:
    """The concrete Host names of ~/.ssh/config and /etc/ssh/ssh_config (read once per process)."""
    global _host_entries
    if _host_entries is None:
        from opskit import sshconfig

        try:
            _host_entries = {n for n, _ in sshconfig.concrete_hosts(sshconfig.config_blocks(None))}
        except InputError:
            _host_entries = set()
    return _host_entries


def from_ssh_config(config: str | None) -> Source:
    """An opskit inventory with one host per concrete Host entry of `config` (None: ~/.ssh/config
    and /etc/ssh/ssh_config, as ssh reads them); wildcard and negated patterns are skipped."""
    from opskit import sshconfig
    from opskit.inventory import NAME_RE

    blocks = sshconfig.config_blocks(config)
    hosts: dict = {}
    lines: dict = {}
    for name, block in sshconfig.concrete_hosts(blocks):
        if not NAME_RE.fullmatch(name):
            raise InventoryError(f"{block.file}:{block.line}: Host {name}: not usable as an opskit host name "
                                 "(letters, digits, '.', '_' and '-')")
        hosts[name] = {"ssh_alias": name}
        lines[("hosts", name)] = block.line
    if not hosts:
        raise InventoryError(f"{sshconfig.config_label(config)}: no concrete Host entry (only wildcard patterns, or none)")
    raw: dict = {"hosts": hosts}
    if config is not None:
        raw = {"defaults": {"ssh_config": config}, "hosts": hosts}
    label = sshconfig.config_label(config)
    return Source("ssh-config", located_yaml.Located(Path(label), raw, lines))


def to_yaml(source: Source, origin: str) -> str:
    """The source as opskit inventory YAML (validated first: what is written loads)."""
    import yaml

    from opskit.inventory import build

    build(source.located)
    header = f"# opskit inventory converted from {origin}\n# (opskit inventory convert; see inventory.example.yaml for every field)\n"
    return header + yaml.safe_dump(source.raw, sort_keys=False, allow_unicode=True, default_flow_style=False)


def write_new(path: str, text: str, force: bool) -> None:
    """Write `path` whole or not at all; an existing file is kept unless `force`."""
    import os
    import tempfile

    target = Path(path)
    if target.exists() and not force:
        raise InputError(f"{path} exists; give --force to overwrite it")
    directory = target.parent if str(target.parent) else Path(".")
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(temp, 0o600)
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
