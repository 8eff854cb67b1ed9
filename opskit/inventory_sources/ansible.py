"""Ansible inventories (YAML, INI, any inventory plugin), read by Ansible itself.

`ansible-inventory -i FILE --list` prints the inventory exactly as Ansible reads it (ranges
like web[01:20] expanded, `children` nested, group and host vars merged per host), so every
format and plugin Ansible knows works the same here. It is translated into opskit's shape:

    ansible_host (else the inventory name)   → address (ssh_alias when ~/.ssh/config has that Host)
    ansible_port / ansible_ssh_port          → port
    ansible_user / ansible_ssh_user          → user
    ansible_ssh_private_key_file             → identity_file
    ansible_become (method sudo)             → become: sudo
    opskit_FIELD (e.g. opskit_origin, opskit_wordpress) → the opskit host field FIELD
    any other variable                       → vars (host.vars.NAME in playbooks)
    each group (but all and ungrouped)       → a group, with the hosts of its children too

Ansible gives its connection variables to ssh as options, which beat ~/.ssh/config; they are
the host's own values here too (they beat the ssh config, as in Ansible). Ansible's own
connection secrets (ansible_password, ansible_ssh_pass, ansible_become_password) are refused:
opskit reads secrets from the environment only (password_env, passphrase_env).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from opskit import located_yaml
from opskit.errors import InventoryError
from opskit.inventory_sources import Source, connect_fields

INSTALL_HINT = ("pip install ansible-core (into the environment opskit runs from), or apt-get install ansible")
SECRETS = ("ansible_password", "ansible_ssh_pass", "ansible_ssh_password", "ansible_become_password",
           "ansible_become_pass", "ansible_sudo_pass")
SSH_CONNECTIONS = (None, "ssh", "paramiko", "smart", "paramiko_ssh", "ansible.builtin.ssh", "ansible.builtin.paramiko_ssh")


def ansible_inventory() -> str | None:
    """ansible-inventory on PATH, or beside the Python running opskit (a virtualenv's bin/)."""
    found = shutil.which("ansible-inventory")
    if found:
        return found
    beside = Path(sys.executable).parent / "ansible-inventory"
    return str(beside) if beside.exists() else None


def run_ansible_inventory(file: Path, fmt: str) -> dict:
    binary = ansible_inventory()
    if binary is None:
        raise InventoryError(f"{file} is an Ansible inventory ({fmt}); opskit reads it through Ansible's "
                             f"ansible-inventory, which is not installed: {INSTALL_HINT}")
    env = dict(os.environ, ANSIBLE_INVENTORY_UNPARSED_FAILED="true", ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED="true",
               ANSIBLE_NOCOLOR="1", ANSIBLE_DEPRECATION_WARNINGS="false", ANSIBLE_LOCALHOST_WARNING="false")
    try:
        done = subprocess.run([binary, "-i", str(file), "--list"], capture_output=True, text=True, timeout=120,
                              env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise InventoryError(f"{file}: ansible-inventory did not finish in 120s") from None
    if done.returncode != 0:
        raise InventoryError(f"{file}: Ansible cannot read this inventory: {_ansible_error(done.stderr)}")
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        raise InventoryError(f"{file}: ansible-inventory printed no JSON ({exc})") from None


def _ansible_error(stderr: str) -> str:
    """Ansible's own message, on one line (it names the file and line for YAML mistakes)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    wanted = [line for line in lines if line.startswith(("ERROR", "[ERROR]", "[WARNING]"))] or lines
    text = " ".join(wanted)
    text = re.sub(r"\s+", " ", text)
    return text[:800] or "no message"


def read(file: Path, text: str, fmt: str) -> Source:
    return translate(file, text, run_ansible_inventory(file, fmt), fmt)


def translate(file: Path, text: str, listing: dict, fmt: str = "YAML") -> Source:
    """The JSON of `ansible-inventory --list` → opskit's raw inventory, with lines found in `text`."""
    hostvars = (listing.get("_meta") or {}).get("hostvars") or {}
    groups_json = {name: body for name, body in listing.items() if name != "_meta" and isinstance(body, dict)}

    order: list[str] = []
    members: dict[str, list[str]] = {}

    def walk(group: str, trail: tuple[str, ...]) -> list[str]:
        if group in members:
            return members[group]
        body = groups_json.get(group) or {}
        found: list[str] = []
        for host in body.get("hosts") or []:
            found.append(host)
            if host not in order:
                order.append(host)
        for child in body.get("children") or []:
            if child not in trail:
                found.extend(h for h in walk(child, trail + (child,)) if h not in found)
        members[group] = found
        return found

    walk("all", ("all",))
    for group in groups_json:
        walk(group, (group,))
    for host in hostvars:
        if host not in order:
            order.append(host)

    lines: dict = {}
    hosts: dict = {}
    for name in order:
        line = _line_of(text, name)
        if line:
            lines[("hosts", name)] = line
        hosts[name] = _host(file, name, hostvars.get(name) or {}, line)
    groups = {}
    for group, hosts_of in members.items():
        if group in ("all", "ungrouped") or not hosts_of:
            continue
        groups[group] = {"hosts": [h for h in order if h in hosts_of]}
        line = _line_of(text, group, group=True)
        if line:
            lines[("groups", group)] = line
    if not hosts:
        raise InventoryError(f"{file}: the Ansible inventory ({fmt}) lists no hosts")
    raw = {"groups": groups, "hosts": hosts} if groups else {"hosts": hosts}
    return Source("ansible", located_yaml.Located(file, raw, lines), format=fmt)


def _host(file: Path, name: str, hv: dict, line: int | None) -> dict:
    where = f"{file}:{line}" if line else str(file)
    connection = hv.get("ansible_connection")
    if connection not in SSH_CONNECTIONS:
        raise InventoryError(f"{where}: host {name}: ansible_connection={connection}: opskit reaches hosts over SSH only")
    for secret in SECRETS:
        if secret in hv:
            raise InventoryError(f"{where}: host {name}: {secret}: opskit does not take secrets from an inventory; "
                                 "use an ssh key or agent, or password_env/passphrase_env (opskit_password_env)")
    address = hv.get("ansible_host") or hv.get("ansible_ssh_host") or name
    port = hv.get("ansible_port", hv.get("ansible_ssh_port"))
    if isinstance(port, str) and port.isdigit():
        port = int(port)   # INI and templated values may arrive as text
    out = connect_fields(str(address), hv.get("ansible_user") or hv.get("ansible_ssh_user"), port)
    key = hv.get("ansible_ssh_private_key_file") or hv.get("ansible_private_key_file")
    if key:
        out["identity_file"] = str(key)
    if hv.get("ansible_become") in (True, "true", "yes", "True", 1) and hv.get("ansible_become_method", "sudo") == "sudo":
        out["become"] = "sudo"
    extra = {}
    for var, value in hv.items():
        if var.startswith("opskit_"):
            out[var[len("opskit_"):]] = value
        elif not var.startswith("ansible_"):
            extra[var] = value
    if extra:
        out["vars"] = {**extra, **(out.get("vars") or {})}
    return out


def _line_of(text: str, name: str, group: bool = False) -> int | None:
    """The line where `name` is written: the host (or a range that makes it, web[01:20]), or the
    group's [name] / [name:children] header or YAML key."""
    patterns = [re.compile(rf"^\s*\[{re.escape(name)}(:[a-z]+)?\]", re.M), re.compile(rf"^\s*{re.escape(name)}\s*:", re.M)] \
        if group else [re.compile(rf"(?<![\w.-]){re.escape(name)}(?![\w.-])")]
    if not group:
        # a range: the name with its digits/letters at one place written as [a:b]
        for match in re.finditer(r"[0-9]+|[a-z]+", name):
            prefix, suffix = name[:match.start()], name[match.end():]
            if prefix:   # (a bare [x:y] at the start of a line is a group header)
                patterns.append(re.compile(rf"(?<![\w.-]){re.escape(prefix)}\[[^\]:]*:[^\]]*\]{re.escape(suffix)}(?![\w.-])"))
    for pattern in patterns:
        found = pattern.search(text)
        if found:
            return text.count("\n", 0, found.start()) + 1
    return None
