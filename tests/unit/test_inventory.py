"""Inventory loading, validation, precedence and host selection (opskit/inventory.py, opskit/located_yaml.py).

The reference shape is tests/unit/data/inventory-issue-shape.yaml, verbatim:

    defaults:            # any host field; hosts and groups override
      user: deploy
      known_hosts: ~/.ssh/known_hosts
    groups:
      shared: {hosts: [site1, site2], vars: {cdn: {provider: cloudflare, timeout: 100}}}
    hosts:
      site1:
        address: 203.0.113.10        # SSH address (or ssh_alias: NAME from ~/.ssh/config)
        port: 22
        user: site1
        identity_file: ~/.ssh/id_ed25519
        wordpress: {root: ~/public_html, url: https://site1.example.com/}
        origin: http://203.0.113.10:80    # where the site's web server answers directly
        cdn: {provider: keycdn, hostname: site1-1a2b.kxcdn.com, timeout: 100}
        dns: {domain: site1.example.com, expect: [203.0.113.10], old: [198.51.100.7],
              resolvers: ["198.51.100.53", "198.51.100.54:5353"], nameservers: ["192.0.2.1"]}
        logs: {nginx_error: /var/log/nginx/error.log, php_fpm: ~/logs/php-fpm.log}
      site2:
        address: 203.0.113.11

Malformed inventories live one per file in tests/unit/data/bad-inventory/, with
what the error must say in expected.json beside them; one harness runs them all.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from opskit import inventory, located_yaml
from opskit.errors import InputError, InventoryError
from tests.unit.badfiles import BadFiles

DATA = Path(__file__).parent / "data"
SHAPE = DATA / "inventory-issue-shape.yaml"
BAD = DATA / "bad-inventory"


def write(tmp_path: Path, text: str, name: str = "inventory.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# -- the documented shape ------------------------------------------------------------
@pytest.fixture(scope="module")
def shape():
    return inventory.load(SHAPE)


def test_shape_loads_every_field_of_site1(shape):
    site1 = shape.hosts["site1"]
    assert site1.address == "203.0.113.10"
    assert site1.port == 22
    assert site1.identity_file == "~/.ssh/id_ed25519"
    assert site1.wordpress.root == "~/public_html"
    assert site1.wordpress.url == "https://site1.example.com/"
    assert site1.site_hostname == "site1.example.com"
    assert site1.origin == "http://203.0.113.10:80"
    assert site1.cdn.hostname == "site1-1a2b.kxcdn.com"
    assert site1.cdn.timeout == 100
    assert site1.dns.domain == "site1.example.com"
    assert site1.dns.expect == ["203.0.113.10"]
    assert site1.dns.old == ["198.51.100.7"]
    assert site1.dns.resolvers == ["198.51.100.53", "198.51.100.54:5353"]
    assert site1.dns.nameservers == ["192.0.2.1"]
    assert site1.logs == {"nginx_error": "/var/log/nginx/error.log", "php_fpm": "~/logs/php-fpm.log"}


def test_shape_host_beats_group_beats_defaults(shape):
    site1, site2 = shape.hosts["site1"], shape.hosts["site2"]
    # host over group vars
    assert site1.cdn.provider == "keycdn"
    # group vars over defaults (the default CdnSettings has no provider)
    assert site2.cdn.provider == "cloudflare"
    assert site2.cdn.timeout == 100
    assert site2.cdn.hostname is None
    # host over defaults
    assert site1.user == "site1"
    assert site2.user == "deploy"
    # defaults reach every host
    assert site1.known_hosts == site2.known_hosts == "~/.ssh/known_hosts"
    # nothing leaks from one host to another
    assert site2.wordpress.url is None and site2.site_hostname is None
    assert site2.port is None and site2.logs == {}


def test_shape_groups_and_order(shape):
    assert list(shape.hosts) == ["site1", "site2"]
    assert shape.groups["shared"].hosts == ("site1", "site2")
    assert shape.file == SHAPE


def test_deep_merge_merges_mappings_key_by_key(tmp_path):
    path = write(tmp_path, """\
defaults:
  cdn: {provider: bunny, timeout: 30}
  dns: {domain: example.com, resolvers: ["192.0.2.53"]}
groups:
  g1: {hosts: [a], vars: {cdn: {timeout: 60}, dns: {resolvers: ["192.0.2.54"]}}}
  g2: {hosts: [a], vars: {cdn: {hostname: cdn.example.com}}}
hosts:
  a: {address: 192.0.2.1, cdn: {timeout: 90}}
  b: {address: 192.0.2.2}
""")
    inv = inventory.load(path)
    a, b = inv.hosts["a"], inv.hosts["b"]
    assert (a.cdn.provider, a.cdn.timeout, a.cdn.hostname) == ("bunny", 90, "cdn.example.com")
    # lists are replaced, not concatenated
    assert a.dns.resolvers == ["192.0.2.54"]
    assert a.dns.domain == "example.com"
    assert (b.cdn.provider, b.cdn.timeout, b.cdn.hostname) == ("bunny", 30, None)
    assert b.dns.resolvers == ["192.0.2.53"]


def test_later_group_wins_over_earlier_group(tmp_path):
    path = write(tmp_path, """\
groups:
  first: {hosts: [a], vars: {user: one, port: 2201}}
  second: {hosts: [a], vars: {user: two}}
hosts:
  a: {address: 192.0.2.1}
""")
    a = inventory.load(path).hosts["a"]
    assert (a.user, a.port) == ("two", 2201)


def test_deep_merge_does_not_mutate_its_inputs():
    base = {"cdn": {"provider": "a", "timeout": 1}}
    over = {"cdn": {"timeout": 2}, "user": "x"}
    merged = inventory.deep_merge(base, over)
    assert merged == {"cdn": {"provider": "a", "timeout": 2}, "user": "x"}
    assert base == {"cdn": {"provider": "a", "timeout": 1}}
    merged["cdn"]["provider"] = "changed"
    assert base["cdn"]["provider"] == "a"


def test_ssh_alias_is_enough_to_reach_a_host(tmp_path):
    path = write(tmp_path, "hosts:\n  a: {ssh_alias: prod-a}\n")
    assert inventory.load(path).hosts["a"].ssh_alias == "prod-a"


# -- malformed inventories: one file per situation, one harness ----------------------
BAD_SET = BadFiles(BAD)


def test_every_bad_inventory_has_an_expectation_and_vice_versa():
    assert BAD_SET.described() == set(BAD_SET.files)



@pytest.mark.parametrize("name, want", BAD_SET.cases())
def test_bad_inventory(name, want):
    path = BAD / name
    with pytest.raises(InputError) as caught:
        inventory.load(path)
    got = str(caught.value)
    # InventoryError for everything the inventory loader decides; the YAML layer raises InputError.
    assert isinstance(caught.value, (InventoryError, InputError))

    problems = []
    if want["line"] is None:
        location = str(path)
        if re.search(re.escape(str(path)) + r":\d", got):
            problems.append("names a line, but there is none to name")
    else:
        location = f"{path}:{want['line']}" + (f":{want['col']}" if "col" in want else "")
        if not re.search(re.escape(location) + r"(?!\d)", got):
            problems.append(f"does not name {location}")
    for fragment in want["contains"]:
        if fragment not in got:
            problems.append(f"lacks {fragment!r}")
    for fragment in want.get("absent", []):
        if fragment in got:
            problems.append(f"must not contain {fragment!r}")
    assert not problems, f"\nGOT:  {got}\nWANT: {location} ... {want['contains']}\n" + "\n".join(problems)


def test_error_message_is_one_line(tmp_path):
    path = write(tmp_path, "hosts:\n  a:\n    address: 192.0.2.1\n    port: nope\n")
    with pytest.raises(InventoryError) as caught:
        inventory.load(path)
    assert "\n" not in str(caught.value)
    assert f"{path}:4: hosts.a.port" in str(caught.value)


@pytest.mark.parametrize("text, line, fragment", [
    ("hosts:\n  a: {address: 192.0.2.1}\nextra: 1\n", 3, "unknown top-level key"),
    ("hosts: {}\n", 1, "lists no hosts"),
    ("hosts:\n  'bad name': {address: 192.0.2.1}\n", 2, "host names may use"),
    ("groups:\n  g: {hosts: [a], bogus: 1}\nhosts:\n  a: {address: 192.0.2.1}\n", 2, "groups.g.bogus: unknown field"),
    ("groups:\n  g: {hosts: a}\nhosts:\n  a: {address: 192.0.2.1}\n", 2, "must be a list of host names"),
    ("hosts:\n  a: {address: 192.0.2.1, name: other}\n", 2, "the host's name is its key"),
    ("- just\n- a list\n", 1, "must be a mapping with 'hosts:'"),
])
def test_structural_errors(tmp_path, text, line, fragment):
    path = write(tmp_path, text)
    with pytest.raises(InventoryError) as caught:
        inventory.load(path)
    got = str(caught.value)
    assert f"{path}:{line}:" in got and fragment in got, f"\nGOT:  {got}\nWANT: {path}:{line}: ... {fragment}"


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="inventory file not found"):
        inventory.load(tmp_path / "nope.yaml")


def test_secret_value_is_not_echoed(tmp_path):
    path = write(tmp_path, "hosts:\n  a: {address: 192.0.2.1, passphrase_env: 'correct horse'}\n")
    with pytest.raises(InventoryError) as caught:
        inventory.load(path)
    assert "correct horse" not in str(caught.value)
    assert "passphrase_env" in str(caught.value)


# -- single validators ---------------------------------------------------------------
@pytest.mark.parametrize("value", ["203.0.113.10", "2001:db8::1", "host.example.com", "web-1", "example.com."])
def test_check_address_accepts(value):
    assert inventory.check_address(value) == value


@pytest.mark.parametrize("value", [
    "1.2.3.4; rm -rf /", "$(touch PWNED)", "`id`", "a b", "-oProxyCommand=sh", "", "host..example", "a_b.example",
    "x" * 254,
])
def test_check_address_refuses(value):
    with pytest.raises(ValueError):
        inventory.check_address(value)


# The field regexes end with '$', which also matches before a final newline: they must fullmatch.
@pytest.mark.parametrize("field, value", [
    ("address", "example.com\n"), ("user", "deploy\n"), ("ssh_alias", "prod\n"),
    ("password_env", "SITE_PW\n"), ("passphrase_env", "KEY_PW\n"), ("origin", "http://192.0.2.1\n"),
    ("origin", "http://192.0.2.1/ x"),
])
def test_fields_refuse_a_trailing_newline(tmp_path, field, value):
    extra = "" if field == "address" else "    address: 192.0.2.1\n"
    path = write(tmp_path, f"hosts:\n  a:\n{extra}    {field}: {json.dumps(value)}\n")
    line = 4 if extra else 3
    with pytest.raises(InventoryError, match=rf"{re.escape(str(path))}:{line}: hosts\.a\.{field}:"):
        inventory.load(path)


@pytest.mark.parametrize("field, value", [
    ("user", "deploy"), ("ssh_alias", "prod.a@b"), ("password_env", "SITE_PW"), ("origin", "http://192.0.2.1:8080"),
    ("origin", "https://192.0.2.1/sub/path"),
])
def test_fields_accept_plain_values(tmp_path, field, value):
    path = write(tmp_path, f"hosts:\n  a:\n    address: 192.0.2.1\n    {field}: {json.dumps(value)}\n")
    assert getattr(inventory.load(path).hosts["a"], field) == value


@pytest.mark.parametrize("text", ["hosts:\n  \"a\\n\": {address: 192.0.2.1}\n",
                                  "groups:\n  \"g\\n\": {hosts: [a]}\nhosts:\n  a: {address: 192.0.2.1}\n"])
def test_host_and_group_names_refuse_a_trailing_newline(tmp_path, text):
    path = write(tmp_path, text)
    with pytest.raises(InventoryError, match="names may use letters"):
        inventory.load(path)


# An IPv6 zone ('%...') must be [A-Za-z0-9_.-]+: ipaddress alone accepts any text there.
@pytest.mark.parametrize("value", ["fe80::1%$(touch PWNED)", "fe80::1%;rm -rf ~", "fe80::1%a b", "fe80::1%eth0\n",
                                   "fe80::1%`id`", "fe80::1%a/b"])
def test_check_address_refuses_shell_text_in_ipv6_scope(value):
    with pytest.raises(ValueError):
        inventory.check_address(value)
    with pytest.raises(ValueError):
        inventory.parse_endpoint(value, 53)


@pytest.mark.parametrize("value", ["fe80::1%eth0", "fe80::1%enp0s3.100", "fe80::1%br_lan-1", "fe80::1%2"])
def test_check_address_accepts_a_plain_ipv6_zone(value):
    assert inventory.check_address(value) == value
    assert inventory.parse_endpoint(value, 53) == (value, 53)


@pytest.mark.parametrize("value, want", [
    ("198.51.100.53", ("198.51.100.53", 53)),
    ("198.51.100.54:5353", ("198.51.100.54", 5353)),
    ("2001:db8::53", ("2001:db8::53", 53)),
    ("[2001:db8::53]:5353", ("2001:db8::53", 5353)),
    ("[2001:db8::53]", ("2001:db8::53", 53)),
])
def test_parse_endpoint(value, want):
    assert inventory.parse_endpoint(value, 53) == want


@pytest.mark.parametrize("value", [
    "resolver.example.com", "resolver.example.com:53", "1.2.3.4:0", "1.2.3.4:65536", "1.2.3.4:", "1.2.3.4:x",
    "[2001:db8::1", "[2001:db8::1]53", "", " 198.51.100.53", "198.51.100.53\n", "198.51.100.53:53 ", "\t[2001:db8::53]:53",
])
def test_parse_endpoint_refuses(value):
    with pytest.raises(ValueError):
        inventory.parse_endpoint(value, 53)


@pytest.mark.parametrize("url", ["https://exa mple.com/", "https://example.com/a b", "https://example.com/\n",
                                 "https://example.com\n", "https://example.com/\t", " https://example.com/"])
def test_wordpress_url_with_whitespace_is_refused(tmp_path, url):
    path = write(tmp_path, f"hosts:\n  a:\n    address: 192.0.2.1\n    wordpress: {{url: {json.dumps(url)}}}\n")
    with pytest.raises(InventoryError, match=rf"{re.escape(str(path))}:4: hosts\.a\.wordpress\.url:"):
        inventory.load(path)


# parse_endpoint once strip()ped the text but the raw value was kept, and http_target built
# 'http://203.0.113.10\n/...' from wordpress.resolve
@pytest.mark.parametrize("field, loc", [("wordpress: {url: 'http://a.example/', resolve: %s}", "wordpress.resolve"),
                                        ("dns: {resolvers: ['192.0.2.53', %s]}", "dns.resolvers.1"),
                                        ("dns: {nameservers: [%s]}", "dns.nameservers.0")])
@pytest.mark.parametrize("value", ["203.0.113.10\n", " 203.0.113.10:8080\t"])
def test_endpoints_refuse_surrounding_whitespace(tmp_path, field, loc, value):
    path = write(tmp_path, "hosts:\n  a:\n    address: 192.0.2.1\n    " + field % json.dumps(value) + "\n")
    with pytest.raises(InventoryError, match=rf"{re.escape(str(path))}:4: hosts\.a\.{re.escape(loc)}: .*no spaces or newlines"):
        inventory.load(path)


@pytest.mark.parametrize("url, want", [
    ("https://site1.example.com/", "site1.example.com"),
    ("http://site1.example.com:8080/blog", "site1.example.com"),
    ("https://site1.example.com", "site1.example.com"),
])
def test_site_hostname(tmp_path, url, want):
    path = write(tmp_path, f"hosts:\n  a: {{address: 192.0.2.1, wordpress: {{url: '{url}'}}}}\n")
    assert inventory.load(path).hosts["a"].site_hostname == want


@pytest.mark.parametrize("value, ok", [
    ("203.0.113.10", True), ("203.0.113.10:8080", True), ("[2001:db8::1]:443", True),
    ("site1.example.com", False), ("203.0.113.10:0", False), ("203.0.113.10; id", False),
])
def test_wordpress_resolve(tmp_path, value, ok):
    path = write(tmp_path, f"hosts:\n  a:\n    address: 192.0.2.1\n    wordpress: {{url: 'https://a.example/', resolve: '{value}'}}\n")
    if ok:
        assert inventory.load(path).hosts["a"].wordpress.resolve == value
    else:
        with pytest.raises(InventoryError, match=rf"{re.escape(str(path))}:4: hosts\.a\.wordpress\.resolve"):
            inventory.load(path)


def test_resolve_path(monkeypatch):
    monkeypatch.delenv("OPSKIT_INVENTORY", raising=False)
    assert inventory.resolve_path(None) == Path("inventory.yaml")
    monkeypatch.setenv("OPSKIT_INVENTORY", "/etc/opskit/inv.yaml")
    assert inventory.resolve_path(None) == Path("/etc/opskit/inv.yaml")
    assert inventory.resolve_path("mine.yaml") == Path("mine.yaml")


# -- selection -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    path = tmp_path_factory.mktemp("fleet") / "inventory.yaml"
    path.write_text("""\
groups:
  eu: {hosts: [web-eu-1, web-eu-2]}
  db: {hosts: [db-1]}
  empty: {hosts: []}
hosts:
  web-us-1: {address: 192.0.2.1}
  web-eu-1: {address: 192.0.2.2}
  db-1: {address: 192.0.2.3}
  web-eu-2: {address: 192.0.2.4}
""")
    return inventory.load(path)


def names(hosts):
    return [h.name for h in hosts]


def test_select_glob_keeps_inventory_order(fleet):
    assert names(fleet.select(("web-*",))) == ["web-us-1", "web-eu-1", "web-eu-2"]
    assert names(fleet.select(("web-eu-?",))) == ["web-eu-1", "web-eu-2"]
    assert names(fleet.select(("db-1",))) == ["db-1"]


def test_select_groups_and_patterns_combine_without_duplicates(fleet):
    assert names(fleet.select(("web-eu-1", "db-*"), ("eu",))) == ["web-eu-1", "db-1", "web-eu-2"]
    assert names(fleet.select(groups=("db", "eu"))) == ["web-eu-1", "db-1", "web-eu-2"]


def test_select_all(fleet):
    assert names(fleet.select(everything=True)) == ["web-us-1", "web-eu-1", "db-1", "web-eu-2"]


def test_select_unknown_host_suggests(fleet):
    with pytest.raises(InputError) as caught:
        fleet.select(("web-eu-3",))
    assert "no host in" in str(caught.value)
    assert "'web-eu-3'" in str(caught.value)
    assert "did you mean" in str(caught.value) and "web-eu-1" in str(caught.value)


def test_select_unknown_group_suggests(fleet):
    with pytest.raises(InputError, match=r"no group 'dbs' in .*\(did you mean db\?\)"):
        fleet.select(groups=("dbs",))


def test_select_nothing_asked_is_an_error(fleet):
    with pytest.raises(InputError, match="--host NAME, --group NAME or --all"):
        fleet.select()


def test_select_empty_group_is_an_error(fleet):
    with pytest.raises(InputError, match="matched no hosts"):
        fleet.select(groups=("empty",))


def test_select_pattern_without_close_match_has_no_hint(fleet):
    with pytest.raises(InputError) as caught:
        fleet.select(("zzzzzz",))
    assert "did you mean" not in str(caught.value)


# -- located_yaml: where each value came from ---------------------------------------------
def test_located_yaml_a_field_is_located_on_its_key_line(tmp_path):
    path = write(tmp_path, """\
top:
  block_map:
    child: 1
  block_list:

    - a
    - {x: 1}
  flow: {k: [1,
    2]}
  scalar: s
""")
    located = located_yaml.load(path, "test")
    assert located.lines == {
        (): 1, ("top",): 1,
        ("top", "block_map"): 2, ("top", "block_map", "child"): 3,
        ("top", "block_list"): 4, ("top", "block_list", 0): 6, ("top", "block_list", 1): 7,
        ("top", "block_list", 1, "x"): 7,
        ("top", "flow"): 8, ("top", "flow", "k"): 8, ("top", "flow", "k", 0): 8, ("top", "flow", "k", 1): 9,
        ("top", "scalar"): 10,
    }
    assert located.line_of(("top", "block_list", 5, "deeper")) == 4
    assert located.where(("nope",)) == f"{path}:1"


# -- located_yaml: aliases and nesting are bounded --------------------------------------------
def test_located_yaml_refuses_a_billion_laughs_fast():
    started = time.perf_counter()
    with pytest.raises(InputError) as caught:
        inventory.load(BAD / "alias-bomb.yaml")
    assert time.perf_counter() - started < 0.5
    assert re.match(re.escape(str(BAD / "alias-bomb.yaml")) + r":\d+:\d+: refused: aliases expand", str(caught.value))


def nested(kind: str, depth: int) -> str:
    inner = "[" * depth + "]" * depth if kind == "list" else "{a: " * depth + "1" + "}" * depth
    return f"hosts:\n  a:\n    address: 192.0.2.1\n    vars: {{x: {inner}}}\n"


@pytest.mark.parametrize("kind", ["list", "map"])
@pytest.mark.parametrize("depth", [65, 5000])
def test_located_yaml_refuses_deep_nesting_with_file_and_line(tmp_path, kind, depth):
    path = write(tmp_path, nested(kind, depth))
    with pytest.raises(InputError, match=rf"^{re.escape(str(path))}:4:\d+: refused: values nest more than 64 levels deep$"):
        inventory.load(path)


@pytest.mark.parametrize("kind", ["list", "map"])
def test_located_yaml_accepts_nesting_up_to_the_limit(tmp_path, kind):
    # 64 levels in all: the document, hosts, a, vars, x, then 59 more
    host = inventory.load(write(tmp_path, nested(kind, 59))).hosts["a"]
    value = host.vars["x"]
    for _ in range(58):
        value = value[0] if kind == "list" else value["a"]
    assert value == ([] if kind == "list" else {"a": 1})


def test_located_yaml_counts_nesting_through_aliases(tmp_path):
    # each alias is shallow, but what it stands for nests deeper and deeper
    lines = ["hosts:", "  a:", "    address: 192.0.2.1", "    vars:", "      l0: &l0 " + "[" * 30 + "]" * 30]
    lines += [f"      l{i}: &l{i} [*l{i - 1}]" for i in range(1, 40)]
    path = write(tmp_path, "\n".join(lines) + "\n")
    with pytest.raises(InputError, match=rf"{re.escape(str(path))}:\d+:\d+: refused: alias \*l\d+ nests values more than 64"):
        inventory.load(path)


def test_located_yaml_aliases_and_merge_keys_of_a_real_fleet_still_load(tmp_path):
    hosts = "\n".join(f"  site{i}: {{<<: *common, address: 192.0.2.{i % 250 + 1}}}" for i in range(500))
    # (an anchor on the groups' vars, merged into 500 hosts: 500 aliases, about 3000 values)
    path = write(tmp_path, "groups:\n  all: {hosts: [], vars: &common {user: deploy, port: 2222, "
                           "logs: {nginx: /var/log/nginx/error.log}}}\n"
                           f"hosts:\n{hosts}\n")
    fleet = inventory.load(path)
    assert len(fleet.hosts) == 500
    assert {(h.user, h.port, h.logs["nginx"]) for h in fleet.hosts.values()} == {("deploy", 2222, "/var/log/nginx/error.log")}
