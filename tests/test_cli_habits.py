"""CLI habits admins bring from Ansible and WP-CLI, on hosts that cannot be reached (nothing
listens on their loopback port), so no server is needed: selection with --exclude and
@failed, fixed step status identifiers, --format of the listing commands."""

from __future__ import annotations

import csv
import io
import json

import yaml

from tests.conftest import run_cli


def _inventory(tmp_path, names=("web1", "web2", "web3")):
    hosts = {name: {"address": f"127.0.99.{i}", "port": 9, "user": "nobody", "connect_timeout": 2}
             for i, name in enumerate(names, 1)}
    file = tmp_path / "inventory.yaml"
    file.write_text(yaml.safe_dump({"hosts": hosts}))
    return file


def test_exclude_leaves_hosts_out_and_a_typo_is_an_error(tmp_path):
    inventory = _inventory(tmp_path)
    result = run_cli("-i", str(inventory), "run", "facts", "--host", "web*", "--exclude", "web2", "--json")
    assert result.returncode == 1   # unreachable: nothing listens
    assert sorted(result.json["hosts"]) == ["web1", "web3"]
    assert {h["status"] for h in result.json["hosts"].values()} == {"unreachable"}
    typo = run_cli("-i", str(inventory), "run", "facts", "--host", "web*", "--exclude", "wbe2")
    assert typo.returncode == 2 and "--exclude 'wbe2' matches none of the selected hosts" in typo.stderr
    everything = run_cli("-i", str(inventory), "run", "facts", "--host", "web1", "--exclude", "web*")
    assert everything.returncode == 2 and "--exclude leaves no host selected" in everything.stderr


def test_at_failed_reruns_the_hosts_that_failed_in_the_last_run(tmp_path):
    inventory = _inventory(tmp_path)
    none_yet = run_cli("-i", str(inventory), "run", "facts", "--host", "@failed")
    assert none_yet.returncode == 2 and "@failed: no runs in" in none_yet.stderr
    first = run_cli("-i", str(inventory), "run", "facts", "--host", "web1", "--host", "web3", "--json")
    assert first.returncode == 1
    again = run_cli("-i", str(inventory), "run", "facts", "--host", "@failed", "--exclude", "web3", "--json")
    assert sorted(again.json["hosts"]) == ["web1"], again.stderr


def test_listing_commands_speak_every_format(tmp_path):
    as_json = run_cli("list", "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    books = {row["playbook"]: row for row in json.loads(as_json.stdout)}
    assert books["disable-cdn"]["changes"] == "temporary" and books["facts"]["changes"] == "none"
    as_csv = list(csv.DictReader(io.StringIO(run_cli("list", "--format", "csv").stdout)))
    assert {row["playbook"] for row in as_csv} == set(books)
    as_yaml = yaml.safe_load(run_cli("list", "--format", "yaml").stdout)
    assert {row["playbook"] for row in as_yaml} == set(books)
    shown = json.loads(run_cli("show", "disable-cdn", "--format", "json").stdout)
    assert shown["name"] == "disable-cdn" and shown["changes"] == "temporary"
    assert [s["kind"] for s in shown["steps"]][:2] == ["probe", "check"]
    assert json.loads(run_cli("runs", "--format", "json").stdout) == []


def test_no_inventory_names_the_ways_to_give_one(tmp_path):
    result = run_cli("run", "facts", "--all")   # cwd is the repository: no ./inventory.yaml there
    assert result.returncode == 2
    for hint in ("inventory file not found: inventory.yaml (from the default, ./inventory.yaml)",
                 "-i FILE", "$OPSKIT_INVENTORY", "inventory.example.yaml", "opskit inventory convert"):
        assert hint in result.stderr, result.stderr
    named = run_cli("run", "facts", "--all", env={"OPSKIT_INVENTORY": str(tmp_path / "gone.yaml")})
    assert f"inventory file not found: {tmp_path / 'gone.yaml'} (from $OPSKIT_INVENTORY)" in named.stderr


def _complete(words: str, env: dict | None = None) -> list[str]:
    """What bash completion offers for the last word of `words`, through click's own protocol."""
    result = run_cli(env={"_OPSKIT_COMPLETE": "bash_complete", "COMP_WORDS": f"opskit {words}",
                          "COMP_CWORD": str(len(words.split()) + (1 if words.endswith(" ") else 0)), **(env or {})})
    assert result.returncode == 0, result.stderr
    return [line.split(",", 1)[1] for line in result.stdout.splitlines() if "," in line]


def test_shell_completion_offers_playbooks_hosts_groups_and_runs(tmp_path):
    inventory = _inventory(tmp_path)
    text = inventory.read_text() + "groups:\n  webs: {hosts: [web1, web2]}\n"
    inventory.write_text(text)
    assert {"disable-cdn", "dns-check", "facts"} <= set(_complete("run d")) | set(_complete("run f"))
    assert set(_complete("run d")) >= {"disable-cdn", "dns-check"} and "facts" not in _complete("run d")
    assert _complete(f"-i {inventory} run facts --host web") == ["web1", "web2", "web3"]
    assert _complete(f"-i {inventory} run facts --group w") == ["webs"]
    assert _complete("run facts --host web", env={"OPSKIT_INVENTORY": str(inventory)}) == ["web1", "web2", "web3"]
    run_cli("-i", str(inventory), "run", "facts", "--host", "web1", "--json")
    runs = json.loads(run_cli("runs", "--all", "--format", "json").stdout)
    assert runs and _complete("rollback 2") == [runs[0]["run_id"]]
    script = run_cli(env={"_OPSKIT_COMPLETE": "bash_source"})
    assert "_opskit_completion" in script.stdout


def test_runs_piped_prints_whole_ids_and_no_deadline_for_a_finished_run():
    import time

    from opskit.journal import Journal

    journal = Journal.default()
    future = time.time() + 3600
    held, done = "20261201-101010-aaaa", "20261201-101011-bbbb"
    for run_id, ending in ((held, {"event": "armed", "deadline": future}),
                           (done, {"event": "end", "status": "rolled_back"})):
        host = "a-rather-long-host-name-for-a-narrow-terminal"
        journal.create(run_id, {"playbook": "disable-cdn", "hosts": {host: {"address": "127.0.99.1"}}})
        journal.append(run_id, host, {"event": "lease", "deadline": future})
        journal.append(run_id, host, {"event": "applied", "index": 0})
        journal.append(run_id, host, ending)
    listed = run_cli("runs", "--all", env={"COLUMNS": "40"})
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line for line in listed.stdout.splitlines() if line[:8].isdigit()}
    assert set(rows) == {held, done}, listed.stdout                     # whole ids, one row each
    assert " held " in rows[held] and ("(in 59m" in rows[held] or "(in 1h" in rows[held]), rows[held]
    assert " rolled_back " in rows[done] and rows[done].rstrip().endswith("-"), rows[done]
    as_json = {r["run_id"]: r for r in json.loads(run_cli("runs", "--all", "--json").stdout)}
    assert as_json[done]["deadline"] is None and as_json[held]["deadline"] == future
