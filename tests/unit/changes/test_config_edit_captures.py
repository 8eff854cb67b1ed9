"""The config edit planner (opskit/changes/config.py) on situations from data.

tests/captures/changes/config_edit/<situation>/ holds
  params.json        the ConfigEditParams
  files/             the files the runner read, mirroring their absolute paths on the host
  nginx-T.txt        (nginx) the real `nginx -T` of that tree (tests/captures/refresh_nginx.py)
  expected.json      path, action, line, noop, blocked and summary of the plan, exactly
  expected/          the new bytes of the edited file, at its path
  expected.diff      `diff -u --label PATH --label PATH old new` of that file, made by GNU diff
  README.md          what the situation shows
Every folder is one test; files are read and compared as bytes. Then the real
programs read each planned edit: nginx -t on the tree with the edited file (lab/nginx_tree.py),
and PHP's own ini reader on an edited php.ini, .user.ini or php-fpm pool file.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from lab.nginx_tree import run_nginx, write_tree
from opskit.changes.config import ConfigEditParams, EditPlan, plan_edit

SITUATIONS = Path(__file__).parent.parent.parent / "captures" / "changes" / "config_edit"
REQUIRED = {
    "nginx-include-chain", "nginx-repeated-per-location", "nginx-comment-same-line", "nginx-quoted-semicolon-nearby",
    "nginx-add-in-location", "nginx-add-in-server", "nginx-already-set-noop", "nginx-unknown-server-blocked",
    "php-fpm-pool-set", "php-fpm-pool-add", "php-ini-set", "user-ini-add", "user-ini-crlf-set", "nginx-crlf-add",
}


def tree(root: Path) -> dict[str, bytes]:
    return {"/" + str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def plan_for(folder: Path) -> EditPlan:
    params = ConfigEditParams(**json.loads((folder / "params.json").read_text()))
    dump_file = folder / "nginx-T.txt"
    # bytes, not read_text(): universal newlines would turn a CRLF file's dump into LF
    dump = dump_file.read_bytes().decode("utf-8", "surrogateescape") if dump_file.exists() else None
    return plan_edit(params, tree(folder / "files"), dump)


def test_every_situation_is_there_and_complete():
    names = {p.name for p in SITUATIONS.iterdir() if p.is_dir()}
    assert REQUIRED <= names, sorted(REQUIRED - names)
    for name in names:
        folder = SITUATIONS / name
        assert {"params.json", "expected.json", "files", "README.md"} <= {p.name for p in folder.iterdir()}, name
        if json.loads((folder / "expected.json").read_text())["action"]:
            assert (folder / "expected").is_dir() and (folder / "expected.diff").is_file(), name


@pytest.mark.parametrize("folder", sorted(p for p in SITUATIONS.iterdir() if p.is_dir()), ids=lambda p: p.name)
def test_situation(folder: Path):
    expected = json.loads((folder / "expected.json").read_text())
    plan = plan_for(folder)
    got = {"path": plan.path, "action": plan.action, "line": plan.line, "noop": plan.noop,
           "blocked": plan.blocked, "summary": plan.summary}
    assert got == expected
    files = tree(folder / "files")
    assert plan.old == files.get(plan.path, b"")
    if plan.action is None:
        assert plan.new == plan.old and plan.diff == "" and not (folder / "expected").exists()
        return
    edited = tree(folder / "expected")
    assert list(edited) == [plan.path]
    assert plan.new == edited[plan.path]
    # the diff is for people: bytes that are not UTF-8 show as U+FFFD, on both sides
    assert plan.diff == (folder / "expected.diff").read_bytes().decode("utf-8", "replace")


def _changing() -> list[Path]:
    return [p for p in sorted(SITUATIONS.iterdir())
            if p.is_dir() and json.loads((p / "expected.json").read_text())["action"]]


def php_reads(path: Path, code: str, *args: str) -> str:
    php = shutil.which("php")
    assert php, "the php CLI is not installed: apt-get install php8.2-cli (see .ci/run)"
    return subprocess.run([php, "-n", "-r", code, str(path), *args], capture_output=True, text=True, timeout=30,
                          check=True).stdout


@pytest.mark.parametrize("folder", _changing(), ids=lambda p: p.name)
def test_the_real_software_reads_the_edit(folder: Path, tmp_path: Path):
    params = json.loads((folder / "params.json").read_text())
    plan = plan_for(folder)
    files = {**tree(folder / "files"), plan.path: plan.new}
    if params["format"] == "nginx":
        write_tree(tmp_path, files)
        proc = run_nginx(tmp_path, "/etc/nginx/nginx.conf")
        assert proc.returncode == 0, proc.stderr
        return
    edited = tmp_path / "edited.ini"
    edited.write_bytes(plan.new)
    if params["format"] == "php-ini":
        # PHP's ini reader in normal mode, the last assignment in any section winning, as for php.ini
        # (not php -c: the CLI pins max_execution_time to 0 whatever the file says)
        got = php_reads(edited, "$v = null; foreach (parse_ini_file($argv[1], true) as $k => $s) {"
                                " if (is_array($s) && array_key_exists($argv[2], $s)) $v = $s[$argv[2]];"
                                " elseif ($k === $argv[2]) $v = $s; } echo $v;", params["directive"])
    else:
        # php-fpm reads its files with PHP's ini parser in normal mode
        got = php_reads(edited, "echo parse_ini_file($argv[1], true)[$argv[2]][$argv[3]];",
                        params["pool"] or "www", params["directive"])
    assert got == params["value"]
