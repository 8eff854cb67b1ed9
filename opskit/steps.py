"""The four kinds of step a playbook is made of, and the registry of them.

    Probe  = a POSIX sh snippet + a pure parser of its output (read-only); opskit/probes/
    Change = inspect the world, plan (pure), a sh apply snippet and a sh undo
             snippet the guard on the host can run without us; opskit/changes/
    Check  = a verification that returns passed / failed / error; opskit/checks/
    Rule   = a pure function from typed facts to findings; opskit/rules/

Each kind declares a pydantic `Params` model so playbook mistakes are caught
when the playbook loads, with file and line. Step modules register themselves
with @register; each kind's Registry finds them in its package by name, importing
only the modules a playbook uses: adding a module there is all it takes.
"""

from __future__ import annotations

import enum
import importlib
import importlib.util
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from opskit.findings import Finding

if TYPE_CHECKING:
    from opskit.inventory import Host
    from opskit.transport import Session


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass
class Context:
    """What a step may use; passed explicitly, never global."""

    host: "Host"
    session: "Session"
    run_id: str
    check_mode: bool = False
    results: dict[str, Any] = field(default_factory=dict)   # step id → value
    interrupt: Any = None        # the run's threading.Event: a long check (measure) stops when it is set

    def path(self, path: str) -> str:
        return self.session.path(path)


# -- probes -----------------------------------------------------------------
class Probe:
    name: ClassVar[str]
    Params: ClassVar[type[BaseModel]] = NoParams

    def script(self, params: BaseModel, ctx: Context) -> str:
        raise NotImplementedError

    def parse(self, output: str, exit_status: int, params: BaseModel) -> Any:
        raise NotImplementedError


# -- changes ----------------------------------------------------------------
@dataclass
class Plan:
    """What a change would do on one host.

    noop:     why nothing is needed (None when there is work to do)
    summary:  one line, e.g. "rename A → B"
    diff:     unified diff for file edits (empty otherwise)
    record:   everything apply() and the undo snippet need (JSON-able)
    blocked:  why it must not go ahead (the transaction fails, nothing changed)
    original: the bytes an edit replaces; the controller keeps a private copy so it can
              rebuild the host's undo records if they are lost there
    """

    summary: str
    record: dict = field(default_factory=dict)
    noop: str | None = None
    diff: str = ""
    blocked: str | None = None
    original: bytes | None = None


class Change:
    name: ClassVar[str]
    Params: ClassVar[type[BaseModel]] = NoParams

    def plan(self, params: BaseModel, ctx: Context) -> Plan:
        """Read what is there (may use the session) and decide; changes nothing."""
        raise NotImplementedError

    def prepare(self, record: dict, tx_dir: str, index: int, ctx: Context) -> dict:
        """Name what undo needs on the host (backup, temp files) in the record before
        anything is written. Pure. Returns the record."""
        return record

    def apply_script(self, record: dict) -> str:
        """POSIX sh body that makes the change, calling `applied MSG` or `apply_failed MSG`.
        It runs inside guard.apply_script: under the undo lock, only while the transaction
        is armed, so it never lands after the guard or a rollback ended the transaction."""
        raise NotImplementedError

    def undo_script(self, record: dict) -> str:
        """POSIX sh body that undoes this change, calling exactly one of the guard's
        `undone`, `not_applied`, `conflict` or `failed` helpers with a message."""
        raise NotImplementedError

    def handlers(self, record: dict) -> list[str]:
        """POSIX sh bodies to run once after the changes applied and once after the undos
        (a graceful reload), each calling `handled MSG` or `handler_failed MSG`. The same
        body from several changes runs once."""
        return []


# -- checks -----------------------------------------------------------------
class Verdict(str, enum.Enum):
    PASSED = "passed"
    FAILED = "failed"    # we got an answer and it is wrong (the site said 502)
    ERROR = "error"      # we could not get an answer


@dataclass
class CheckResult:
    verdict: Verdict
    summary: str
    observed: Any = None
    expected: Any = None
    evidence: tuple[str, ...] = ()
    findings: tuple[Finding, ...] = ()   # what the check noticed besides its verdict (a redirect to https)
    unmet: str | None = None   # set when it cannot pass on this host whatever happens (see Check.preflight)

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.PASSED


class Check:
    name: ClassVar[str]
    Params: ClassVar[type[BaseModel]] = NoParams
    # False for checks run from the controller alone (HTTP, DNS, a condition): a playbook
    # made only of those never opens an SSH session
    needs_host: ClassVar[bool] = True

    def run(self, params: BaseModel, ctx: Context) -> CheckResult:
        raise NotImplementedError

    def preflight(self, params: BaseModel, ctx: Context) -> str | None:
        """Why this check cannot pass on this host whatever the run does — the inventory lacks
        what it needs ("site1: no 'origin' in the inventory") — or None. Pure: no network, no
        host. The runner asks it of the checks ahead before the first change, so a run (and its
        --check) that is bound to fail stops before changing anything and names the cause."""
        return None


# -- rules ------------------------------------------------------------------
class Rule:
    """A pure function from typed facts to findings: no network, no clock, no host.

    `Params` is the typed facts (filled from `with:` references to probes' and checks'
    values, the inventory and `{{ run.now }}`); `evaluate` draws the conclusions.
    A rule step's value is {"causes": [...], "findings": [...], **value(facts)} for later steps.
    """

    name: ClassVar[str]
    Params: ClassVar[type[BaseModel]] = NoParams

    def evaluate(self, facts: BaseModel) -> list[Finding]:
        raise NotImplementedError

    def value(self, facts: BaseModel) -> dict | None:
        """Data later steps may use besides the findings (e.g. the timeout chain to set),
        merged into the rule step's value; pure like evaluate."""
        return None


class Registry(Mapping):
    """The steps of one kind by name, imported on first use.

    Start-up cost matters (a 50-host run is measured against plain ssh), so the step
    modules are not all imported up front: the package's files are scanned as text for
    their class-level `name = "..."` and a module is imported when one of its names is
    asked for. tests/unit/test_steps_registry.py checks the scan against a full import.
    """

    def __init__(self, package: str):
        self.package = package
        self._classes: dict[str, type] = {}
        self._where: dict[str, list[str]] | None = None

    def index(self) -> dict[str, list[str]]:
        """name → the modules that declare it (scanned as text, nothing imported)."""
        if self._where is None:
            spec = importlib.util.find_spec(self.package)
            where: dict[str, list[str]] = {}
            for folder in spec.submodule_search_locations or ():
                for file in sorted(Path(folder).glob("*.py")):
                    if file.name.startswith("_"):
                        continue
                    for body in _REGISTERED_CLASS.findall(file.read_text(encoding="utf-8")):
                        for name in _DECLARED_NAME.findall(body)[:1]:
                            where.setdefault(name, []).append(f"{self.package}.{file.stem}")
            self._where = where
        return self._where

    def add(self, cls: type) -> None:
        self._classes[cls.name] = cls

    def __getitem__(self, name: str) -> type:
        if name not in self._classes:
            for module in self.index().get(name, ()):
                importlib.import_module(module)
        return self._classes[name]

    def __contains__(self, name: object) -> bool:
        return name in self._classes or name in self.index()

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(set(self.index()) | set(self._classes)))

    def __len__(self) -> int:
        return len(set(self.index()) | set(self._classes))

    def load_all(self) -> None:
        for modules in self.index().values():
            for module in modules:
                importlib.import_module(module)


# A step class is decorated `@register` and declares its name at class level, four
# spaces in: `    name = "rename"`. The body is every indented (or blank) line after it.
_REGISTERED_CLASS = re.compile(r"^@register[ \t]*\nclass [^\n]*\n((?:[ \t]+[^\n]*\n|[ \t]*\n)*)", re.MULTILINE)
_DECLARED_NAME = re.compile(r'^    name(?:\s*:\s*ClassVar\[str\])?\s*=\s*"([A-Za-z0-9_-]+)"', re.MULTILINE)

PROBES: Registry = Registry("opskit.probes")
CHANGES: Registry = Registry("opskit.changes")
CHECKS: Registry = Registry("opskit.checks")
RULES: Registry = Registry("opskit.rules")

KINDS: dict[str, tuple[type, Registry]] = {
    "probe": (Probe, PROBES), "change": (Change, CHANGES), "check": (Check, CHECKS), "rule": (Rule, RULES)}


def register(cls):
    for base, table in KINDS.values():
        if issubclass(cls, base):
            table.add(cls)
            return cls
    raise TypeError(f"{cls.__name__} is not a Probe, Change, Check or Rule")


def load_builtin_steps() -> None:
    """Import every step module (tests and tools that list every step; a run imports
    only the modules its playbook names)."""
    for _base, table in KINDS.values():
        table.load_all()
