"""diagnose on real servers: php-fpm 8.2 + nginx (origin) + nginx (the edge, standing in for the CDN,
proxying from its own address 127.0.80.2) on loopback (lab/diagnose.py over lab/timeouts.py), a real
sshd host of a private lab (user opskit-x1, 127.0.80.1), and nsd (lab/dns.py) on 127.0.80.53 as
the resolver the inventory names for the site's zone.

Each scenario is produced for real, then `opskit run diagnose --json` runs and the test asserts the
top finding's cause and evidence: php-fpm stopped (socket gone); the origin web server closing
without an answer; max_children exhausted under parallel slow requests; a PHP fatal error in a
plugin; an nftables rule dropping the edge's address; the name resolving to another address; a
healthy host. One server setup for the module; each scenario resets it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from lab.diagnose import DiagnoseSite, EdgeBlock, SiteZone
from lab.timeouts import site_behind_sshd
from lab.sshd import Lab
from lab.sudo import sudo_for
from tests.conftest import run_cli

pytestmark = pytest.mark.integration

SITE = "site1.example.test"
ZONE = "example.test"
ADDRESS = "127.0.80.1"
EDGE_SOURCE = "127.0.80.2"
DNS = "127.0.80.53"
ELSEWHERE = "127.0.80.99"


class Env:
    def __init__(self, lab: Lab, site: DiagnoseSite, zone: SiteZone, base: Path):
        self.lab, self.site, self.zone, self.base = lab, site, zone, base
        self.host = lab.hosts[0]
        self.inventory = self.inventory_with("inventory")

    def fields(self) -> dict:
        return {"wordpress": {"root": "~/public_html", "url": f"http://{SITE}/",
                              "resolve": f"{ADDRESS}:{self.site.edge_port}"},
                "origin": self.site.origin_url,
                "cdn": {"provider": "cloudflare", "timeout": 100, "ranges": [f"{EDGE_SOURCE}/32"]},
                "dns": {"resolvers": [DNS], "timeout": 2}}

    def inventory_with(self, name: str, **fields) -> Path:
        return self.lab.inventory(self.base / f"{name}.yaml", hosts={"h1": {**self.fields(), **fields}})

    def run(self, inventory: Path | None = None, *more: str) -> dict:
        result = run_cli("-i", str(inventory or self.inventory), "run", "diagnose", "--host", "h1", "--json", *more,
                         timeout=90)
        doc = result.json["hosts"]["h1"]
        assert doc["error"] is None, (doc["error"], result.stderr[-3000:])
        assert result.returncode == 0, result.stderr[-3000:]
        return doc


@pytest.fixture(scope="module")
def env():
    if os.geteuid() != 0:
        pytest.fail("the real-server tests need root (sshd, users, php-fpm's master, nsd on port 53)")
    with site_behind_sshd("xdiagnose", "opskit-x", "127.0.80.", site_class=DiagnoseSite,
                          edge_source=EDGE_SOURCE) as (lab, site, base):
        zone = SiteZone(base / "dns", DNS, ZONE, SITE.split(".")[0]).start(lab.hosts[0].address)
        try:
            yield Env(lab, site, zone, base)
        finally:
            zone.stop()


@pytest.fixture
def case(env):
    env.site.configure()
    env.site.reset_logs()
    yield env
    env.site.configure()


def top(doc: dict) -> dict:
    assert doc["findings"], "no findings at all"
    notes = os.environ.get("OPSKIT_DIAGNOSE_NOTES")   # a file: each scenario's top finding as opskit printed it
    if notes:
        with open(notes, "a") as out:
            first = doc["findings"][0]
            out.write(f"== {os.environ.get('PYTEST_CURRENT_TEST', '').split(' ')[0]}\n"
                      f"{first['severity']}  {first['cause']}: {first['summary']}\n"
                      + "".join(f"    {e}\n" for e in first["evidence"]))
    return doc["findings"][0]


def capture(env: Env, doc: dict, situation: str, inventory: Path | None = None) -> None:
    """With OPSKIT_DIAGNOSE_CAPTURE=DIR: the diagnose rule's facts in this scenario (its `with:` rendered
    against the run's step values, as the runner did) and the findings it drew, as a rule capture
    (tests/captures/rules/diagnose/<situation>.json), the lab's temporary paths made stable."""
    folder = os.environ.get("OPSKIT_DIAGNOSE_CAPTURE")
    if not folder:
        return
    import json

    from opskit import inventory as inv
    from opskit import playbook as pb
    from opskit import references

    book = pb.load("diagnose")
    step = next(s for s in book.steps if s.id == "diagnosis")
    host = inv.load(inventory or env.inventory).hosts["h1"]
    values = {"host": host.model_dump(), "steps": {s["id"]: s.get("value") for s in doc["steps"] if s["id"]},
              "run": {}}
    facts = references.render(step.params, values)
    want = [{"cause": f["cause"], "severity": f["severity"], "family": f["family"], "evidence": f["evidence_detail"]}
            for f in doc["findings"]]
    text = json.dumps({"facts": facts, "want": want}, indent=1, default=str)
    text = text.replace(str(env.base), "/srv/lab")
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / f"{situation}.json").write_text(text + "\n")


def evidence_with(finding: dict, text: str) -> str:
    found = [e for e in finding["evidence"] if text in e]
    assert found, f"no evidence with {text!r} in {finding['evidence']}"
    return found[0]


def diagnosis(doc: dict) -> dict:
    return next(s for s in doc["steps"] if s["id"] == "diagnosis")["value"]


def kernel_log(doc: dict) -> dict:
    return next(s for s in doc["steps"] if s["id"] == "logs")["value"]["log_scan"]["kernel"]


def dmesg_restricted() -> bool:
    path = Path("/proc/sys/kernel/dmesg_restrict")
    return path.exists() and path.read_text().strip() == "1"


def settle() -> None:
    time.sleep(1.3)   # php-fpm's master logs a child's exit (and max_children) on its next tick


# -- the scenarios ----------------------------------------------------------------------------

def test_healthy_host(case):
    assert case.site.get("edge", "/") == 200
    doc = case.run()
    capture(case, doc, "healthy")
    first = top(doc)
    assert first["cause"] == "healthy", [(f["cause"], f["summary"]) for f in doc["findings"]]
    evidence_with(first, "public: GET http://")
    evidence_with(first, f"origin: GET {case.site.origin_url}/")
    evidence_with(first, "→ 200")
    assert diagnosis(doc)["verdict"] == "healthy"
    if dmesg_restricted():   # Debian's default: the site's user may not read the kernel's log, and is told so
        assert kernel_log(doc) == {"file": "dmesg -T", "readable": False, "bytes_read": None, "signatures": {},
                                   "reason": "dmesg: read kernel buffer failed: Operation not permitted"}
    # two execs on the host: the public and DNS checks run from the controller; the public-only
    # diagnosis is skipped for a host with SSH (`when: "{{ not host.ssh }}"`: the full one follows)
    assert [(s["kind"], s["status"]) for s in doc["steps"]] == [
        ("check", "passed"), ("check", "passed"), ("rule", "skipped"), ("probe", "ok"), ("probe", "ok"), ("rule", "ok")]


def test_php_fpm_stopped(case):
    site = case.site
    site.stop_fpm()
    assert not site.socket.exists()
    assert site.get("edge", "/sleep.php?s=0") == 502
    doc = case.run()
    capture(case, doc, "php-fpm-stopped")
    first = top(doc)
    assert first["cause"] == "upstream-down", [(f["cause"], f["summary"]) for f in doc["findings"]]
    assert "php-fpm is down" in first["summary"]
    evidence_with(first, f"{site.socket}: no such file")
    evidence_with(first, "(2: No such file or directory) while connecting to upstream")
    evidence_with(first, "the web server's own 502 page (nginx")     # the origin's nginx wrote the 502
    evidence_with(first, "the origin's own 502 passed on unchanged")   # and the edge passed it on
    assert first["family"] == "upstream"


def test_origin_closes_without_answering(case):
    site = case.site
    site.configure(closing=True)
    assert isinstance(site.get("origin", "/sleep.php?s=0"), str)   # no HTTP status: the connection closed
    doc = case.run()
    capture(case, doc, "origin-closes")
    first = top(doc)
    assert first["cause"] == "upstream-down", [(f["cause"], f["summary"]) for f in doc["findings"]]
    assert "the origin web server did not answer" in first["summary"]
    evidence_with(first, "closed")
    evidence_with(first, "public: GET")


def test_max_children_exhausted(case):
    site = case.site
    codes = site.exhaust_workers()
    assert 502 in codes, codes
    settle()
    doc = case.run()
    capture(case, doc, "max-children")
    first = top(doc)
    assert first["cause"] == "overload", [(f["cause"], f["summary"]) for f in doc["findings"]]
    evidence_with(first, "server reached max_children setting (1)")
    evidence_with(first, "(11: Resource temporarily unavailable) while connecting to upstream")


def test_php_fatal_error_in_a_plugin(case):
    site = case.site
    site.configure(broken=True)
    assert site.get("edge", "/") == 500
    assert site.get("edge", "/?p=2") == 500
    doc = case.run()
    capture(case, doc, "php-fatal-in-a-plugin")
    first = top(doc)
    assert first["cause"] == "application", [(f["cause"], f["summary"]) for f in doc["findings"]]
    # the two requests above and diagnose's own two (public, origin) each ended in the fatal error
    assert "4 fatal error lines of 1 kind" in first["summary"] and "opskit_lab_undefined_function" in first["summary"]
    evidence_with(first, "PHP Fatal error:  Uncaught Error: Call to undefined function opskit_lab_undefined_function()")
    evidence_with(first, f"{site.docroot}/wp-content/plugins/broken/broken.php:4: the failing code")
    assert "the plugin 'broken'" in first["advice"]


def test_firewall_drops_the_edge(case):
    site = case.site
    refused = EdgeBlock.available()
    if refused:
        pytest.skip(f"this kernel refuses nftables here: {refused} (the parser is tested on captured output)")
    inventory = case.inventory_with("sudo", become="sudo")
    with EdgeBlock(EDGE_SOURCE, ADDRESS, site.origin_port), sudo_for(case.host.user):
        assert site.get("edge", "/sleep.php?s=0") == 504
        doc = case.run(inventory)
    capture(case, doc, "firewall-drops-the-edge", inventory)
    first = top(doc)
    assert first["cause"] == "firewall", [(f["cause"], f["summary"]) for f in doc["findings"]]
    assert first["severity"] == "error"
    evidence_with(first, "nft list ruleset:")
    evidence_with(first, f"ip saddr {EDGE_SOURCE} ip daddr {ADDRESS} tcp dport {site.origin_port} drop")
    evidence_with(first, f"{EDGE_SOURCE}/32 (inventory cdn.ranges)")
    # root through sudo reads the kernel's ring buffer (whatever OOM kills this machine has had)
    kernel = kernel_log(doc)
    assert (kernel["file"], kernel["readable"]) == ("dmesg -T", True), kernel


def test_domain_resolves_elsewhere(case):
    case.zone.point(ELSEWHERE)
    try:
        doc = case.run()
    finally:
        case.zone.point(ADDRESS)
    capture(case, doc, "name-resolves-elsewhere")
    first = top(doc)
    assert first["cause"] == "dns", [(f["cause"], f["summary"]) for f in doc["findings"]]
    evidence_with(first, f"{SITE} at {DNS}: {ELSEWHERE}")
    assert "opskit run dns-check --host h1" in first["advice"]


def test_a_site_without_ssh_gets_the_public_half(case):
    """ssh: false and no address: the public URL and the origin from the controller, nothing else."""
    fields = case.fields()
    inventory = case.base / "url-only.yaml"
    import yaml

    inventory.write_text(yaml.safe_dump({"hosts": {"urlonly": {"ssh": False, **fields}}}))
    result = run_cli("-i", str(inventory), "run", "diagnose", "--host", "urlonly", "--json", timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    doc = result.json["hosts"]["urlonly"]
    first = top(doc)
    assert first["cause"] == "healthy" and "public side only: no SSH access" in first["summary"]
    skipped = [s["id"] for s in doc["steps"] if s["status"] == "skipped"]
    assert skipped == ["web", "logs", "diagnosis"]
    public_only = next(s for s in doc["steps"] if s["id"] == "diagnosis_public")["value"]
    assert public_only["verdict"] == "healthy" and public_only["ssh"] is False


def test_fleet_report_in_a_real_browser(case):
    """--all over a host with SSH and one known by its URL only (its origin refuses): the plain progress
    gives each host's verdict as it lands, the end has the hosts × causes table, and --report writes an
    HTML page headless Chromium renders with every host's name and verdict, and a Markdown file."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("chromium is not installed (apt-get install chromium; .ci/run installs it)")
    import yaml

    inventory = case.base / "fleet.yaml"
    data = yaml.safe_load(case.inventory.read_text())
    data["hosts"]["gone"] = {"ssh": False, "wordpress": {"url": f"http://{SITE}/", "resolve": f"{ADDRESS}:{case.site.edge_port}"},
                             "origin": "http://127.0.80.3:9",
                             "dns": {"resolvers": [DNS], "timeout": 2, "expect": [ADDRESS]}}
    inventory.write_text(yaml.safe_dump(data))
    page, notes = case.base / "fleet.html", case.base / "fleet.md"
    result = run_cli("-i", str(inventory), "run", "diagnose", "--all", "--report", str(page), timeout=90)
    assert result.returncode == 0, result.stderr[-3000:]
    if os.environ.get("OPSKIT_DIAGNOSE_NOTES"):
        with open(os.environ["OPSKIT_DIAGNOSE_NOTES"], "a") as out:
            out.write("== the fleet run's output\n" + result.stderr + result.stdout)
    assert "h1: ok — diagnosis: healthy" in result.stderr
    assert "gone: ok — diagnosis: upstream-down" in result.stderr
    assert "hosts × causes" in result.stdout + result.stderr
    assert "nginx_timeouts: found=" not in result.stderr   # no facts dump: the findings carry them
    run_cli("-i", str(inventory), "run", "diagnose", "--all", "--report", str(notes), "--json", timeout=90)
    markdown = notes.read_text()
    assert "| h1 | healthy |" in markdown and "| gone | upstream-down |" in markdown
    assert "Public side only" in markdown
    text = page.read_text()
    assert "http://" not in text.split("<body>")[0] and "<link" not in text and "<script" not in text
    rendered = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                               "--no-first-run", "--disable-extensions", "--dump-dom", page.resolve().as_uri()],
                              capture_output=True, text=True, timeout=90)
    dom = rendered.stdout
    assert "<h1>Why the sites answer 502: 2 hosts</h1>" in dom, rendered.stderr[-2000:]
    assert 'id="host-h1"' in dom and 'id="host-gone"' in dom
    assert ">healthy</span></h2>" in dom and ">upstream-down</span></h2>" in dom
    assert "Public side only" in dom and "cannot connect to 127.0.80.3:9: connection refused" in dom
