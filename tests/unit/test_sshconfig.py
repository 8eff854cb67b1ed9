"""opskit.sshconfig: ssh_config as OpenSSH reads it.

The pure parts run on real `ssh -G` output captured in tests/captures/openssh-9.2-debian12/;
the resolver runs the real OpenSSH client (`ssh -G`, which connects nowhere) and the fallback
parser on config files written here. Against real sshd: tests/integration/test_ssh_config.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from opskit import sshconfig
from opskit.errors import InputError

CAPTURES = Path(__file__).parent.parent / "captures" / "openssh-9.2-debian12"


def dump(name: str) -> dict:
    return sshconfig.parse_dump((CAPTURES / f"ssh-G-{name}.txt").read_text())


def settings_for(name: str) -> dict:
    baseline = sshconfig._swap(dump("F-devnull"), sshconfig.UNMATCHABLE, name)
    blocks = sshconfig.scan(str(CAPTURES / "ssh_config"))
    return sshconfig.settings(dump(name), baseline, name, sshconfig.written_keywords(blocks, name))


def test_parse_dump_keeps_repeated_keywords_in_order():
    defaults = dump("F-devnull")
    assert defaults["identityfile"][:2] == ["~/.ssh/id_rsa", "~/.ssh/id_ecdsa"]
    assert defaults["user"] == ["root"] and defaults["port"] == ["22"]
    assert defaults["userknownhostsfile"] == ["/root/.ssh/known_hosts /root/.ssh/known_hosts2"]


def test_settings_of_a_host_entry():
    assert settings_for("web1") == {
        "address": "192.0.2.10", "port": 2222, "user": "deploy", "identity_file": "~/.ssh/id_web1",
        "identities_only": True, "known_hosts": "/root/.ssh/known_hosts_web",
        "strict_host_key_checking": "accept-new", "connect_timeout": 7}


def test_settings_proxyjump_and_match_block():
    assert settings_for("behind") == {"address": "10.0.0.5", "proxy_jump": "deploy@[192.0.2.10]:2222",
                                     "connect_timeout": 7}   # ssh -G brackets the hop's address
    # a Match block: only ssh -G knows it applied; its values differ from the defaults
    assert settings_for("matched-only") == {"user": "matcher", "server_alive_interval": 20, "connect_timeout": 7}


def test_an_unknown_alias_gets_only_what_every_name_gets():
    assert settings_for("unknown-alias") == {"connect_timeout": 7}
    unmatched = sshconfig._swap(dump("opskit-no-such-host.invalid"), sshconfig.UNMATCHABLE, "unknown-alias")
    assert unmatched == dump("unknown-alias"), "no block applied: the same as a name nothing can match"
    matched = sshconfig._swap(dump("opskit-no-such-host.invalid"), sshconfig.UNMATCHABLE, "matched-only")
    assert matched != dump("matched-only"), "the Match block applied: it differs"


def test_a_value_written_equal_to_the_default_still_counts(tmp_path):
    # `User root` while running as root: the same as OpenSSH's default, but written for the host
    blocks = sshconfig.parse_text("Host a\n  User root\n  Port 22\n", "cfg")
    written = sshconfig.written_keywords(blocks, "a")
    baseline = sshconfig._swap(dump("F-devnull"), sshconfig.UNMATCHABLE, "a")
    assert sshconfig.settings(baseline, baseline, "a", written) == {"user": "root", "port": 22}
    assert sshconfig.settings(baseline, baseline, "a", sshconfig.written_keywords(blocks, "b")) == {}


@pytest.mark.parametrize("name, patterns, want", [
    ("web1", ["web1"], True), ("WEB1", ["web1"], True), ("web12", ["web?"], False), ("web1", ["web?"], True),
    ("db", ["*", "!db"], False), ("web", ["*", "!db"], True), ("a.example.com", ["*.example.com,b"], True),
    ("b", ["*.example.com,b"], True), ("c", ["!c"], False),
])
def test_pattern_lists_as_ssh_matches_them(name, patterns, want):
    assert sshconfig.pattern_matches(name, patterns) is want


def test_scan_follows_include_globs_with_file_and_line(tmp_path):
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "b.conf").write_text("Host beta\n  HostName 192.0.2.2\n")
    (tmp_path / "conf.d" / "a.conf").write_text("\n# comment\nHost alpha\n  HostName=192.0.2.1\n")
    main = tmp_path / "config"
    main.write_text(f"Include {tmp_path}/conf.d/*.conf\nHost gamma *.wild !neg\n  User x\n")
    blocks = sshconfig.scan(str(main))
    concrete = [(name, Path(block.file).name, block.line) for name, block in sshconfig.concrete_hosts(blocks)]
    assert concrete == [("alpha", "a.conf", 3), ("beta", "b.conf", 1), ("gamma", "config", 2)]
    assert sshconfig.has_host_entry(blocks, "alpha") and not sshconfig.has_host_entry(blocks, "alpah")
    assert sshconfig.did_you_mean("alpah", blocks) == "; did you mean alpha?"
    assert sshconfig.did_you_mean("zzz", blocks) == ""


def test_include_inside_a_host_block_applies_only_to_that_host(tmp_path):
    (tmp_path / "inner.conf").write_text("User inner\n")
    main = tmp_path / "config"
    main.write_text(f"Host only-me\n  Include {tmp_path}/inner.conf\n  Port 2200\nHost other\n  Port 2300\n")
    blocks = sshconfig.scan(str(main))
    assert "user" in sshconfig.written_keywords(blocks, "only-me")
    assert sshconfig.written_keywords(blocks, "only-me") >= {"user", "port"}
    assert "user" not in sshconfig.written_keywords(blocks, "other")
    flat_other = sshconfig.flatten(str(main), "other")
    assert "User inner" not in flat_other
    assert "User inner" in sshconfig.flatten(str(main), "only-me")


def test_nothing_to_read_means_no_subprocess(tmp_path):
    empty = tmp_path / "config"
    empty.write_text("# nothing but comments, like the lab's\n\n")
    resolver = sshconfig.Resolver(ssh="/nonexistent/ssh")   # would fail if it were run
    found = resolver.resolve_many([("192.0.2.1", str(empty), False)])
    assert found[("192.0.2.1", str(empty))].method == "nothing to read"
    with pytest.raises(InputError, match=r"^no Host entry for 'x' in .*config$"):
        resolver.resolve_many([("x", str(empty), True)])


def test_nothing_opskit_uses_means_one_check_of_the_file(tmp_path):
    config = tmp_path / "config"
    config.write_text("Host *\n  SendEnv LANG\n")
    resolver = sshconfig.Resolver()
    found = resolver.resolve_many([(f"192.0.2.{n}", str(config), False) for n in range(1, 21)])
    assert {r.method for r in found.values()} == {"nothing to read"} and resolver.ssh_runs == 1


def test_a_missing_config_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="ssh config .*nope not found"):
        sshconfig.Resolver().resolve_many([("a", str(tmp_path / "nope"), True)])


CONFIG = """\
Include {dir}/inc.conf
Match host matched-only
  User matcher
Host *
  ConnectTimeout 9
"""


@pytest.fixture
def config(tmp_path):
    (tmp_path / "inc.conf").write_text("Host wp-included\n  HostName 192.0.2.5\n  Port 2202\n  User inc\n")
    path = tmp_path / "config"
    path.write_text(CONFIG.format(dir=tmp_path))
    return str(path)


@pytest.mark.parametrize("ssh", [pytest.param("ssh", id="ssh -G"), pytest.param("", id="parser")])
def test_resolver_ssh_and_parser_agree(config, ssh):
    resolver = sshconfig.Resolver(ssh=shutil.which("ssh") if ssh else "")
    found = resolver.resolve_many([("wp-included", config, True), ("matched-only", config, True),
                                   ("192.0.2.9", config, False)])
    assert found[("wp-included", config)].values == {"address": "192.0.2.5", "port": 2202, "user": "inc", "connect_timeout": 9}
    assert found[("matched-only", config)].values == {"user": "matcher", "connect_timeout": 9}
    assert found[("matched-only", config)].matched
    assert found[("192.0.2.9", config)].values == {"connect_timeout": 9}
    assert found[("wp-included", config)].method == ("ssh -G" if ssh else "parser")
    with pytest.raises(InputError) as error:
        resolver.resolve_many([("wp-inclded", config, True)])
    assert str(error.value) == f"no Host entry for 'wp-inclded' in {config}; did you mean wp-included?"


def test_names_ssh_resolves_alike_share_one_ssh_run(tmp_path):
    config = tmp_path / "config"
    config.write_text("Host 192.0.2.*\n  User fleet\n  Port 2222\nHost *\n  ConnectTimeout 4\n"
                      "Host special\n  HostName 192.0.2.200\n  User %r-x\n")
    names = [f"192.0.2.{n}" for n in range(1, 51)]
    resolver = sshconfig.Resolver()
    found = resolver.resolve_many([(n, str(config), False) for n in names] + [("special", str(config), True)])
    # 50 addresses under the same blocks: one ssh -G (+ the defaults, + the file's check with a name
    # nothing matches); `special` has a %-token: its own
    assert resolver.ssh_runs == 4
    for n in names:
        assert found[(n, str(config))].values == {"user": "fleet", "port": 2222, "connect_timeout": 4}
    # what ssh -G itself prints for one of the derived names
    alone = sshconfig.Resolver()
    assert alone.resolve_many([(names[7], str(config), False)])[(names[7], str(config))].values == \
        found[(names[7], str(config))].values
    assert found[("special", str(config))].values["address"] == "192.0.2.200"


def test_a_match_block_means_one_ssh_run_per_name(tmp_path):
    config = tmp_path / "config"
    config.write_text("Match host 192.0.2.7\n  User seven\nHost *\n  User everyone\n")
    resolver = sshconfig.Resolver()
    assert resolver._shared_key("192.0.2.1", str(config)) is None


def test_a_mistake_anywhere_in_the_config_is_refused_as_ssh_refuses_it(tmp_path):
    config = tmp_path / "config"
    config.write_text("Host web1\n  HostName 192.0.2.1\nHost other\n  HostNmae 192.0.2.2\n")
    with pytest.raises(InputError) as error:
        sshconfig.Resolver().resolve_many([("web1", str(config), True)])
    assert str(error.value) == (f"{config}: ssh refuses this config: {config}: line 4: Bad configuration option: "
                                f"hostnmae; {config}: terminating, 1 bad configuration options")
