"""Inventories admins already have (opskit.inventory_sources), the ssh config precedence in the
loader (opskit.inventory.apply_ssh_config) and the listing formats (opskit.listing).

The Ansible files are the examples of Ansible's "How to build your inventory" guide, read through
the real ansible-inventory (ansible-core, in the test extras); the WP-CLI file is the handbook's
config.yml. Real sshd: tests/integration/test_ssh_config.py.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import yaml

from opskit import inventory, inventory_sources, listing
from opskit.errors import InputError, InventoryError
from opskit.inventory_sources import ansible, wpcli

NEEDS_ANSIBLE = pytest.mark.skipif(ansible.ansible_inventory() is None, reason="ansible-core is not installed (pip install -e '.[test]')")

# Ansible's guide, "Inventory basics: formats, hosts, and groups" (INI and YAML), plus a range,
# host and group vars and children
ANSIBLE_INI = """\
mail.example.com

[webservers]
foo.example.com
bar.example.com

[dbservers]
one.example.com
two.example.com
three.example.com

[atlanta]
host1 http_port=80 maxRequestsPerChild=808 ansible_host=192.0.2.11 ansible_port=2222
host2 http_port=303 maxRequestsPerChild=909 ansible_user=deploy

[atlanta:vars]
ntp_server=ntp.atlanta.example.com
ansible_ssh_private_key_file=~/.ssh/atlanta

[webfarm]
www[01:03].example.com

[southeast:children]
atlanta
webfarm
"""

ANSIBLE_YAML = """\
all:
  hosts:
    mail.example.com:
  children:
    webservers:
      hosts:
        foo.example.com:
        bar.example.com:
    dbservers:
      hosts:
        one.example.com:
        two.example.com:
        three.example.com:
    east:
      hosts:
        foo.example.com:
        one.example.com:
        two.example.com:
    west:
      hosts:
        bar.example.com:
        three.example.com:
    prod:
      children:
        east:
    test:
      children:
        west:
    atlanta:
      hosts:
        host1:
          http_port: 80
          ansible_host: 192.0.2.11
          ansible_port: 2222
          opskit_wordpress: {root: /srv/www/host1, url: https://host1.example.com/}
        host2:
          ansible_user: deploy
      vars:
        ntp_server: ntp.atlanta.example.com
    webfarm:
      hosts:
        www[01:03].example.com:
"""

WPCLI = """\
# Global parameter defaults
path: wp-core
url: http://example.com
user: admin
color: false
disabled_commands:
  - db drop
  - plugin install
require:
  - path-to/command.php

# Subcommand defaults (e.g. `wp config create`)
config create:
    dbuser: root
    dbpass:
    extra-php: |
        define( 'WP_DEBUG', true );
        define( 'WP_POST_REVISIONS', 50 );

# Aliases to other WordPress installs (e.g. `wp @staging rewrite flush`)
# An alias can include 'user', 'url', 'path', 'ssh', or 'http'
@staging:
    ssh: wpcli@staging.wp-cli.org
    user: wpcli
    path: /srv/www/staging.wp-cli.org
@production:
    ssh: wpcli@wp-cli.org:2222
    user: wpcli
    path: /srv/www/wp-cli.org
    url: wp-cli.org

# Aliases can reference other aliases to create alias groups
# Alias groups can be nested
@both:
 - @staging
 - @production
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


_real_connect_fields = inventory_sources.connect_fields


@pytest.fixture(autouse=True)
def _no_user_ssh_config(monkeypatch, tmp_path):
    # connect_fields asks ~/.ssh/config which names are Host entries: never the developer's
    monkeypatch.setattr(inventory_sources, "connect_fields", _connect_fields_without_config)
    for module in (ansible, wpcli):
        monkeypatch.setattr(module, "connect_fields", _connect_fields_without_config)


def _connect_fields_without_config(name, user=None, port=None):
    out = {"address": name}
    if user:
        out["user"] = user
    if port is not None:
        out["port"] = port
    return out


# -- detection ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, kind", [
    ("hosts:\n  a: {address: 192.0.2.1}\n", "opskit"),
    ("defaults: {user: x}\nhosts: {}\n", "opskit"),
    ("hots:\n  a: {address: 192.0.2.1}\n", "opskit"),      # a typo stays opskit's error to report
    (ANSIBLE_YAML, "ansible"),
    ("webservers:\n  hosts:\n    foo.example.com:\n", "ansible"),
    ("plugin: ansible.builtin.constructed\n", "ansible"),
    (WPCLI, "wp-cli"),
])
def test_detect_by_content(text, kind):
    data = yaml.safe_load(text) if kind != "wp-cli" else None
    assert inventory_sources.detect(text, data, kind != "wp-cli") == kind


def test_detect_ini_by_its_section_headers():
    assert inventory_sources.detect(ANSIBLE_INI, None, parsed=False) == "ansible"
    assert inventory_sources.detect("hosts: [oops\n", None, parsed=False) == "opskit"


# -- Ansible -------------------------------------------------------------------------------------------
@NEEDS_ANSIBLE
def test_ansible_ini_from_the_guide(tmp_path):
    inv = inventory.load(write(tmp_path, "hosts", ANSIBLE_INI))
    assert inv.kind == "ansible"
    assert list(inv.hosts)[:2] == ["mail.example.com", "foo.example.com"]
    host1, host2 = inv.hosts["host1"], inv.hosts["host2"]
    assert (host1.address, host1.port, host1.user, host1.identity_file) == ("192.0.2.11", 2222, None, "~/.ssh/atlanta")
    assert host1.vars == {"http_port": 80, "maxRequestsPerChild": 808, "ntp_server": "ntp.atlanta.example.com"}
    assert (host2.address, host2.user) == ("host2", "deploy")
    # a range, and children: southeast holds atlanta's and webfarm's hosts
    assert inv.groups["webfarm"].hosts == ("www01.example.com", "www02.example.com", "www03.example.com")
    assert set(inv.groups["southeast"].hosts) == {"host1", "host2", "www01.example.com", "www02.example.com", "www03.example.com"}
    assert "ungrouped" not in inv.groups and "all" not in inv.groups
    assert [h.name for h in inv.select(groups=("southeast",), ssh_config=False)][:2] == ["host1", "host2"]


@NEEDS_ANSIBLE
def test_ansible_yaml_from_the_guide_with_opskit_fields(tmp_path):
    inv = inventory.load(write(tmp_path, "inventory.yaml", ANSIBLE_YAML))
    assert inv.kind == "ansible"
    assert set(inv.groups["prod"].hosts) == {"foo.example.com", "one.example.com", "two.example.com"}
    assert set(inv.groups["test"].hosts) == {"bar.example.com", "three.example.com"}
    host1 = inv.hosts["host1"]
    assert (host1.address, host1.port) == ("192.0.2.11", 2222)
    assert (host1.wordpress.root, host1.site_hostname) == ("/srv/www/host1", "host1.example.com")
    assert inv.hosts["www02.example.com"].address == "www02.example.com"


@NEEDS_ANSIBLE
def test_ansible_bad_value_is_reported_at_the_file_and_line(tmp_path):
    path = write(tmp_path, "hosts.ini", "[web]\nweb1 ansible_host=192.0.2.1\nweb2 ansible_port=99999\n")
    with pytest.raises(InventoryError, match=rf"^{path}:3: hosts\.web2\.port: Input should be less than or equal to 65535"):
        inventory.load(path)
    ranged = write(tmp_path, "range.ini", "[web]\nweb[1:3] ansible_port=0\n")
    with pytest.raises(InventoryError, match=rf"^{ranged}:2: hosts\.web1\.port"):
        inventory.load(ranged)


@NEEDS_ANSIBLE
def test_ansible_refuses_secrets_and_other_connections(tmp_path):
    secret = write(tmp_path, "s.ini", "[web]\nweb1 ansible_password=hunter2\n")
    with pytest.raises(InventoryError) as error:
        inventory.load(secret)
    assert str(error.value).startswith(f"{secret}:2: host web1: ansible_password:") and "hunter2" not in str(error.value)
    local = write(tmp_path, "l.ini", "[local]\nlocalhost ansible_connection=local\n")
    with pytest.raises(InventoryError, match="ansible_connection=local: opskit reaches hosts over SSH only"):
        inventory.load(local)


@NEEDS_ANSIBLE
def test_ansible_own_error_is_one_line(tmp_path):
    broken = write(tmp_path, "broken.ini", "[web\nweb1\n")
    with pytest.raises(InventoryError) as error:
        inventory.load(broken)
    assert str(error.value).startswith(f"{broken}: Ansible cannot read this inventory:") and "\n" not in str(error.value)


def test_ansible_not_installed_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(ansible, "ansible_inventory", lambda: None)
    path = write(tmp_path, "hosts.ini", ANSIBLE_INI)
    with pytest.raises(InventoryError) as error:
        inventory.load(path)
    assert str(error.value) == (f"{path} is an Ansible inventory (INI); opskit reads it through Ansible's "
                                "ansible-inventory, which is not installed: pip install ansible-core (into the "
                                "environment opskit runs from), or apt-get install ansible")


@NEEDS_ANSIBLE
def test_ansible_inventory_plugin_config(tmp_path):
    """A dynamic inventory: any plugin works, since Ansible runs it (here the generator plugin,
    which needs no cloud account)."""
    path = write(tmp_path, "inventory.yml", """\
plugin: ansible.builtin.generator
hosts:
  name: "{{ application }}-{{ environment }}"
  parents:
    - name: "{{ environment }}"
layers:
  environment: [dev, prod]
  application: [web, api]
""")
    inv = inventory.load(path)
    assert inv.kind == "ansible"
    assert sorted(inv.hosts) == ["api-dev", "api-prod", "web-dev", "web-prod"]
    assert set(inv.groups["prod"].hosts) == {"web-prod", "api-prod"}


def test_a_host_entry_of_the_users_ssh_config_becomes_an_alias(tmp_path, monkeypatch):
    from opskit import sshconfig

    user_config = write(tmp_path, "config", "Host prod-web\n  HostName 192.0.2.80\n")
    monkeypatch.setattr(sshconfig, "USER_CONFIG", str(user_config))
    monkeypatch.setattr(sshconfig, "SYSTEM_CONFIG", str(tmp_path / "none"))
    monkeypatch.setattr(inventory_sources, "_host_entries", None)
    assert inventory_sources._user_host_entries() == {"prod-web"}
    assert _real_connect_fields("prod-web", "me") == {"ssh_alias": "prod-web", "user": "me"}
    assert _real_connect_fields("192.0.2.81", port=2222) == {"address": "192.0.2.81", "port": 2222}


# -- WP-CLI --------------------------------------------------------------------------------------------
def test_wpcli_config_from_the_handbook(tmp_path):
    inv = inventory.load(write(tmp_path, "config.yml", WPCLI))
    assert inv.kind == "wp-cli"
    assert list(inv.hosts) == ["staging", "production"]
    staging, production = inv.hosts["staging"], inv.hosts["production"]
    assert (staging.address, staging.user, staging.port, staging.wordpress.root) == \
        ("staging.wp-cli.org", "wpcli", None, "/srv/www/staging.wp-cli.org")
    assert (production.port, production.wordpress.url) == (2222, "https://wp-cli.org")
    assert inv.groups["both"].hosts == ("staging", "production")
    assert [h.name for h in inv.select(("@production",), ssh_config=False)] == ["production"]
    assert [h.name for h in inv.select(("@both",), ssh_config=False)] == ["staging", "production"]
    assert [h.name for h in inv.select(("@all",), ssh_config=False)] == ["staging", "production"]
    with pytest.raises(InputError, match=r"no alias '@stagin' in .*config.yml \(did you mean @staging\?\)"):
        inv.select(("@stagin",), ssh_config=False)


@pytest.mark.parametrize("text, line, fragment", [
    ("@a:\n  ssh: docker:wordpress\n", 2, "@a.ssh: docker: connections are not SSH"),
    ("@a:\n  path: /srv/www\n", 1, "@a: no 'ssh:'"),
    ("@a:\n  ssh: me@host\n  sshh: x\n", 3, "@a.sshh: not a WP-CLI alias setting"),
    ("@a:\n  ssh: me@host:99999\n", 2, "hosts.a.port: Input should be less than or equal to 65535"),
    ("@a:\n  ssh: me@host\n@g:\n  - @a\n  - @b\n", 5, "@g: '@b' is not an alias of this file (aliases: @a)"),
    ("@a:\n  ssh: me@host\n  url: ftp://x\n", 3, "@a.url: must be http:// or https://"),
    ("@a:\n  ssh: [oops\n", "3:1", "not valid YAML"),   # PyYAML's own message, line and column
    ("@a:\n  ssh: me@host\n  url: \"exa mple.com\"\n", 3, "hosts.a.wordpress.url"),
])
def test_wpcli_errors_name_file_and_line(tmp_path, text, line, fragment):
    path = write(tmp_path, "wp-cli.yml", text)
    with pytest.raises(InventoryError) as error:
        inventory.load(path)
    assert str(error.value).startswith(f"{path}:{line}: "), str(error.value)
    assert fragment in str(error.value)


@pytest.mark.parametrize("value, want", [
    ("wpcli@wp-cli.org:2222", {"user": "wpcli", "host": "wp-cli.org", "port": 2222, "path": None}),
    ("host", {"user": None, "host": "host", "port": None, "path": None}),
    ("me@192.0.2.1/srv/www", {"user": "me", "host": "192.0.2.1", "port": None, "path": "/srv/www"}),
    ("ssh:me@h:22/p", {"user": "me", "host": "h", "port": 22, "path": "/p"}),
])
def test_wpcli_ssh_strings(value, want):
    assert wpcli.parse_ssh(value) == want


def test_convert_writes_an_inventory_that_loads_the_same(tmp_path):
    source = inventory_sources.read(write(tmp_path, "config.yml", WPCLI))
    text = inventory_sources.to_yaml(source, "config.yml")
    out = write(tmp_path, "inventory.yaml", text)
    converted, original = inventory.load(out), inventory.load(tmp_path / "config.yml")
    assert converted.kind == "opskit"
    assert converted.hosts == original.hosts and converted.groups == original.groups
    with pytest.raises(InputError, match="exists; give --force"):
        inventory_sources.write_new(str(out), text, force=False)


# -- the ssh config beside the inventory's values ----------------------------------------------------
def test_precedence_host_over_ssh_config_over_defaults(tmp_path):
    config = write(tmp_path, "ssh_config", "Host prod-a prod-b\n  HostName 192.0.2.7\n  User from-ssh\n  Port 2200\n"
                                           "Host *\n  UserKnownHostsFile /tmp/kh-from-ssh\n")
    path = write(tmp_path, "inventory.yaml", f"""\
defaults: {{user: from-defaults, port: 2201, ssh_config: {config}}}
groups:
  g: {{hosts: [b], vars: {{user: from-group}}}}
hosts:
  a: {{ssh_alias: prod-a, port: 2202}}
  b: {{ssh_alias: prod-b}}
  c: {{address: 192.0.2.8}}
""")
    inv = inventory.load(path)
    assert inv.hosts["a"].user == "from-defaults", "load() alone does not read the ssh config"
    a, b, c = inv.select(everything=True)
    assert (a.address, a.user, a.port) == ("192.0.2.7", "from-ssh", 2202)      # the host's own port wins
    assert (b.user, b.port) == ("from-ssh", 2200)                              # ssh config beats group and defaults
    assert (c.address, c.user, c.port, c.known_hosts) == ("192.0.2.8", "from-defaults", 2201, "/tmp/kh-from-ssh")
    rows = {row["name"]: row for row in inventory.show_rows(inv, [a, b, c])}
    assert rows["a"]["from"]["port"] == "host" and rows["a"]["from"]["user"] == f"ssh config {config}"
    assert rows["b"]["from"]["address"] == f"ssh config {config}"
    assert rows["c"]["from"]["user"] == "defaults" and rows["c"]["groups"] == []
    assert rows["b"]["groups"] == ["g"]


def test_hosts_from_a_journal_fill_only_what_is_unset(tmp_path):
    config = write(tmp_path, "ssh_config", "Host prod-a\n  HostName 192.0.2.7\n  User from-ssh\n")
    host = inventory.Host(name="a", ssh_alias="prod-a", ssh_config=str(config), user="kept")
    resolved, = inventory.apply_ssh_config([host])
    assert (resolved.address, resolved.user) == ("192.0.2.7", "kept")


def test_a_site_known_by_its_url_only_has_nothing_to_resolve(tmp_path):
    config = write(tmp_path, "ssh_config", "Host *\n  User everyone\n")
    url_only = inventory.Host(name="u", ssh=False, wordpress={"url": "https://u.example.com/"}, ssh_config=str(config))
    reached = inventory.Host(name="a", address="192.0.2.1", ssh_config=str(config))
    assert [(h.name, h.user) for h in inventory.apply_ssh_config([url_only, reached])] == [("u", None), ("a", "everyone")]


def test_bad_value_from_the_ssh_config_names_it(tmp_path):
    config = write(tmp_path, "ssh_config", "Host prod-a\n  HostName bad_name!\n")
    path = write(tmp_path, "inventory.yaml", f"hosts:\n  a: {{ssh_alias: prod-a, ssh_config: {config}}}\n")
    with pytest.raises(InventoryError, match=rf"^{config}: hostname for 'prod-a' \(host a\): Value error, not an IP address or host name"):
        inventory.load(path).select(everything=True)


def test_from_ssh_config_takes_concrete_host_entries(tmp_path):
    config = write(tmp_path, "ssh_config", "Host web1 web2\n  User x\nHost *.example.com !bad\n  User y\nHost db?\n  User z\n")
    source = inventory_sources.from_ssh_config(str(config))
    assert source.raw == {"defaults": {"ssh_config": str(config)},
                          "hosts": {"web1": {"ssh_alias": "web1"}, "web2": {"ssh_alias": "web2"}}}
    with pytest.raises(InventoryError, match="no concrete Host entry"):
        inventory_sources.from_ssh_config(str(write(tmp_path, "wild", "Host *\n  User x\n")))


# -- listing -------------------------------------------------------------------------------------------
ROWS = [{"name": "a", "port": 22, "groups": ["x", "y"], "from": {"user": "host"}}, {"name": "b, c", "port": None}]


def test_listing_formats_keep_columns_and_types():
    columns = ["name", "port", "groups", "from"]
    assert json.loads(listing.render(ROWS, columns, "json")) == [
        {"name": "a", "port": 22, "groups": ["x", "y"], "from": {"user": "host"}},
        {"name": "b, c", "port": None, "groups": None, "from": None}]
    assert yaml.safe_load(listing.render(ROWS, columns, "yaml")) == json.loads(listing.render(ROWS, columns, "json"))
    assert list(csv.reader(io.StringIO(listing.render(ROWS, columns, "csv")))) == [
        columns, ["a", "22", "x y", "user: host"], ["b, c", "", "", ""]]
    table = listing.render(ROWS, columns, "table").splitlines()
    assert table[0].split() == columns and table[1].split()[:4] == ["a", "22", "x", "y"]
    assert listing.render([], columns, "yaml") == "[]\n" and json.loads(listing.render([], columns, "json")) == []
    with pytest.raises(ValueError, match="unknown format 'xml'"):
        listing.render(ROWS, columns, "xml")
