"""The shape of a transaction on real sshd hosts: how many execs a read-only run costs, that a
controller-only playbook never connects, and that paths under the home reach the host's
shell unexpanded in the one exec of a read-only run."""

from __future__ import annotations

import pytest

from opskit import inventory, playbook
from opskit.journal import Journal, new_run_id
from opskit.runner import Run, RunOptions
from opskit.transport import Session

from tests.conftest import make_tree, write_file

pytestmark = pytest.mark.integration


def _count_execs(monkeypatch) -> dict[str, int]:
    counts: dict[str, int] = {}
    real_exec = Session.exec

    def counting(self, *args, **kwargs):
        counts[self.host.name] = counts.get(self.host.name, 0) + 1
        return real_exec(self, *args, **kwargs)

    monkeypatch.setattr(Session, "exec", counting)
    return counts


def _run(inv_file, book, tmp_path, **options):
    loaded = inventory.load(inv_file)
    hosts = loaded.select((), (), True)
    run = Run(new_run_id(), playbook.load(book), hosts, RunOptions(**options), Journal(tmp_path / "state"))
    return run.execute()


def test_facts_costs_one_exec_per_host_and_finds_wordpress_under_home(hosts, tmp_path, monkeypatch):
    for host in hosts.hosts:
        wp = make_tree(host, "my site/public_html")
        write_file(host, "my site/public_html/wp-config.php", "<?php\n")
    inv_file = hosts.inventory(tmp_path / "inv.yaml", defaults={"wordpress": {"root": "~/my site/public_html"}})
    counts = _count_execs(monkeypatch)
    outcomes = _run(inv_file, "facts", tmp_path)
    for host in hosts.hosts:
        outcome = outcomes[host.name]
        assert outcome.status == "ok", outcome.error
        assert counts[host.name] == 1, counts
        facts = outcome.steps[0]["value"]
        assert facts["wordpress"]["root"] == f"{host.home}/my site/public_html"
        assert facts["system"]["home"] == str(host.home)
        assert outcome.home == str(host.home)


def test_a_controller_only_playbook_never_connects(hosts, tmp_path, monkeypatch):
    book = tmp_path / "controller-only.yaml"
    book.write_text(
        "name: controller-only\ndescription: a condition and a rule, nothing on the host\nsteps:\n"
        "  - name: Always\n    check: require\n    with: {value: true}\n"
        "  - name: Nothing to say\n    rule: opskit_state\n    with: {check_mode: false}\n")
    # an address nothing listens on: any connection attempt would make the host unreachable
    inv_file = hosts.inventory(tmp_path / "inv.yaml", hosts={h.name: {"address": "127.0.9.9", "port": 9}
                                                            for h in hosts.hosts})
    counts = _count_execs(monkeypatch)
    outcomes = _run(inv_file, str(book), tmp_path)
    assert {o.status for o in outcomes.values()} == {"ok"}, {n: o.error for n, o in outcomes.items()}
    assert counts == {}


def test_an_unreachable_read_only_host_is_unreachable_not_failed(hosts, tmp_path):
    inv_file = hosts.inventory(tmp_path / "inv.yaml", hosts={"h1": {"address": "127.0.9.9", "port": 9}})
    outcomes = _run(inv_file, "facts", tmp_path)
    assert outcomes["h1"].status == "unreachable"
    assert all(outcomes[h.name].status == "ok" for h in hosts.hosts[1:])
