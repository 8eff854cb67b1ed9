"""Load and validate playbooks (YAML) into steps.

    name: disable-cdn
    description: one paragraph
    changes: none | temporary | permanent   # temporary: undone when the hold ends unless confirmed
    hold: 15m                               # default hold window for temporary changes
    options: {measure: {default: false, help: ...}}   # run options, {{ run.measure }}
    steps:
      - name: Find WordPress           # label shown in progress
        id: wp                         # results are available as {{ steps.wp... }}
        probes: [wordpress]            # or probe: NAME | change: NAME | check: NAME | rule: NAME
        with: {root: "{{ host.wordpress.root }}"}
        when: "{{ steps.x.found }}"    # run only when this reference is true (references.truthy: "false", "no", "0" are not);
                                       # "{{ not host.ssh }}": only when it is false
        on_fail: stop | warn           # checks: stop (default: roll back) or only report
        finding: {cause, severity, advice, family}   # a failing check's finding
    after_rollback: [ ...checks run after an undo... ]

Built-in playbooks ship in the package; --playbook-path adds folders, whose
files win over the built-ins of the same name.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from opskit import steps as step_kinds
from opskit import located_yaml, references
from opskit.duration import MAX_HOLD, parse_duration
from opskit.errors import InputError, PlaybookError
from opskit.findings import Family
from opskit.inventory import Host

BUILTIN_DIR = Path(__file__).parent / "playbooks"
STEP_KEYS = {"name", "id", "probe", "probes", "change", "check", "rule", "with", "when", "on_fail", "finding"}


@dataclass(frozen=True)
class Step:
    kind: Literal["probe", "change", "check", "rule"]
    names: tuple[str, ...]          # one for change/check/rule; one or more probes
    label: str
    id: str | None
    params: dict[str, Any]
    when: str | None = None
    on_fail: Literal["stop", "warn"] = "stop"
    finding: dict[str, str] = field(default_factory=dict)   # cause/advice shown when a check fails
    line: int | None = None


@dataclass(frozen=True)
class Playbook:
    name: str
    description: str
    changes: Literal["none", "temporary", "permanent"]
    hold: int
    steps: tuple[Step, ...]
    after_rollback: tuple[Step, ...]
    file: Path
    options: dict[str, dict] = field(default_factory=dict)   # {{ run.NAME }}: {default, help}

    @property
    def changes_things(self) -> bool:
        return any(s.kind == "change" for s in self.steps)

    def may_change(self, values: dict[str, Any] | None = None) -> bool:
        """Can a run with these run options change anything? A change step whose `when:` is
        a run option that is off (check-timeouts without --measure) cannot: such a run
        takes no lock, arms no guard and asks no confirmation."""
        run = {name: spec["default"] for name, spec in self.options.items()} | (values or {})
        for step in self.steps:
            if step.kind != "change":
                continue
            if step.when is not None:
                negated, ref = step.when.parts
                if ref.startswith("run.") and ref[4:] in run:
                    if references.truthy(run[ref[4:]]) == negated:
                        continue   # decided by a run option, and the step is off
            return True
        return False


def search_path(extra: tuple[str, ...] = ()) -> list[Path]:
    return [Path(p) for p in extra] + [BUILTIN_DIR]


def available(extra: tuple[str, ...] = ()) -> dict[str, Path]:
    """Playbook name → file; earlier folders win."""
    found: dict[str, Path] = {}
    for folder in search_path(extra):
        if not folder.is_dir():
            raise InputError(f"playbook folder not found: {folder}")
        for file in sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml")):
            found.setdefault(file.stem, file)
    return found


def find(name: str, extra: tuple[str, ...] = ()) -> Path:
    if name.endswith((".yaml", ".yml")) and Path(name).is_file():
        return Path(name)
    names = available(extra)
    if name not in names:
        close = difflib.get_close_matches(name, list(names), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise InputError(f"unknown playbook {name!r}{hint}; `opskit list` shows them")
    return names[name]


def load(name: str, extra: tuple[str, ...] = ()) -> Playbook:
    file = find(name, extra)
    located = located_yaml.load(file, "playbook")
    data = located.data

    def fail(path: tuple, message: str) -> PlaybookError:
        dotted = ".".join(map(str, path)) or "(top level)"
        return PlaybookError(f"{located.where(path)}: {dotted}: {message}")

    if not isinstance(data, dict):
        raise fail((), "a playbook is a mapping with name, description and steps")
    unknown = set(data) - {"name", "description", "changes", "hold", "options", "steps", "after_rollback"}
    if unknown:
        raise fail((sorted(unknown)[0],), "unknown field (expected name, description, changes, hold, options, steps, after_rollback)")
    for key in ("name", "description"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise fail((key,), "required text")
    changes = data.get("changes", "none")
    if changes not in ("none", "temporary", "permanent"):
        raise fail(("changes",), "must be none, temporary or permanent")
    try:
        hold = parse_duration(data.get("hold", "15m"), maximum=MAX_HOLD)
    except ValueError as exc:
        raise fail(("hold",), str(exc)) from None
    if not isinstance(data.get("steps"), list) or not data["steps"]:
        raise fail(("steps",), "a non-empty list of steps is required")
    ids: set[str] = set()
    steps = tuple(_step(located, ("steps", i), raw, ids, fail) for i, raw in enumerate(data["steps"]))
    after = tuple(_step(located, ("after_rollback", i), raw, ids, fail) for i, raw in enumerate(data.get("after_rollback") or []))
    for i, step in enumerate(after):
        if step.kind == "change":
            raise fail(("after_rollback", i), "only probes and checks (and rules) may run after a rollback")
    has_changes = any(s.kind == "change" for s in steps)
    if has_changes and changes == "none":
        raise fail(("changes",), "the playbook has change steps: declare changes: temporary or permanent")
    if not has_changes and changes != "none":
        raise fail(("changes",), "the playbook has no change steps: use changes: none")
    options = _options(data.get("options"), fail)
    return Playbook(data["name"], data["description"].strip(), changes, hold, steps, after, file, options)


def _options(raw: Any, fail) -> dict[str, dict]:
    """options: {NAME: {default: VALUE, help: TEXT}} — run options the steps read as
    {{ run.NAME }}; the command line sets them (opskit run ... --measure, --script-time)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise fail(("options",), "a mapping of option name to {default, help}")
    for name, spec in raw.items():
        if not isinstance(name, str) or not name.replace("_", "").isalnum() or name in ("id", "now"):
            raise fail(("options", name), "an option name uses letters, digits and '_' (not id or now)")
        if not isinstance(spec, dict) or set(spec) - {"default", "help"} or "default" not in spec:
            raise fail(("options", name), "an option is a mapping with default (and help)")
    return {name: dict(spec) for name, spec in raw.items()}


def _step(located, path: tuple, raw: Any, ids: set[str], fail) -> Step:
    if not isinstance(raw, dict):
        raise fail(path, "a step is a mapping (probe:, change:, check: or rule: plus with:)")
    unknown = set(raw) - STEP_KEYS
    if unknown:
        raise fail(path + (sorted(unknown)[0],), f"unknown step field (expected {', '.join(sorted(STEP_KEYS))})")
    kinds = [k for k in ("probe", "probes", "change", "check", "rule") if k in raw]
    if len(kinds) != 1:
        raise fail(path, "a step has exactly one of probe, probes, change, check, rule")
    key = kinds[0]
    kind = "probe" if key == "probes" else key
    names = raw[key] if key == "probes" else [raw[key]]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise fail(path + (key,), "must name a step kind (probes: a list of names)")
    table = step_kinds.KINDS[kind][1]
    for name in names:
        if name not in table:
            close = difflib.get_close_matches(name, list(table), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else f" (known: {', '.join(sorted(table))})"
            raise fail(path + (key,), f"unknown {kind} {name!r}{hint}")
    params = raw.get("with") or {}
    if not isinstance(params, dict):
        raise fail(path + ("with",), "must be a mapping of parameters")
    try:
        refs = [(ref, ("with",)) for ref in references.references(params)]
    except references.TemplateError as exc:
        raise fail(path + ("with",), str(exc)) from None
    when = raw.get("when")
    if when is not None:
        try:
            refs.append((references.condition_parts(when if isinstance(when, str) else "")[1], ("when",)))
        except ValueError:
            raise fail(path + ("when",), "must be a single {{ reference }} or {{ not reference }}, "
                                         "e.g. \"{{ steps.ID.found }}\" or \"{{ not host.ssh }}\"") from None
    for ref, where in refs:
        root = ref.split(".")[0]
        if root not in references.ROOTS:
            raise fail(path + where, f"{{{{ {ref} }}}}: references start with host., steps. or run.")
        if root == "steps" and ref.split(".")[1:2] and ref.split(".")[1] not in ids:
            raise fail(path + where, f"{{{{ {ref} }}}}: no earlier step has id {ref.split('.')[1]!r}")
        if root == "host":
            problem = _host_field_problem(ref)
            if problem:
                raise fail(path + where, f"{{{{ {ref} }}}}: {problem}")
    _validate_params([table[name].Params for name in names], params, path, fail)
    step_id = raw.get("id")
    if step_id is not None:
        if not isinstance(step_id, str) or not step_id.replace("_", "").replace("-", "").isalnum():
            raise fail(path + ("id",), "ids use letters, digits, '_' and '-'")
        if step_id in ids:
            raise fail(path + ("id",), f"duplicate step id {step_id!r}")
        ids.add(step_id)
    on_fail = raw.get("on_fail", "stop")
    if on_fail not in ("stop", "warn"):
        raise fail(path + ("on_fail",), "must be stop or warn")
    finding = raw.get("finding") or {}
    if not isinstance(finding, dict) or set(finding) - {"cause", "advice", "severity", "family"}:
        raise fail(path + ("finding",), "a mapping with cause, severity and advice (and optionally family)")
    if "family" in finding and finding["family"] not in {f.value for f in Family}:
        raise fail(path + ("finding", "family"), f"one of {', '.join(f.value for f in Family)}")
    label = raw.get("name") or f"{kind} {', '.join(names)}"
    when = None if when is None else references.Condition(when)
    return Step(kind, tuple(names), str(label), step_id, params, when, on_fail, finding, located.line_of(path))


def _host_field_problem(ref: str) -> str | None:
    """Why `host.A.B...` names no inventory field, or None. Checked when the playbook loads,
    so a typo fails before any connection, not once per host after connecting; the
    free-form parts (host.vars.*, host.logs.*) are only known per host."""
    model: type[BaseModel] = Host
    walked = ["host"]
    for part in ref.split(".")[1:]:
        fields = model.model_fields
        if part not in fields:
            close = difflib.get_close_matches(part, list(fields), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else f" (fields: {', '.join(fields)})"
            return f"{'.'.join(walked)} has no field {part!r}{hint}"
        walked.append(part)
        inner = fields[part].annotation
        if not (isinstance(inner, type) and issubclass(inner, BaseModel)):
            return None   # a value, a list or a free-form mapping: nothing more to check here
        model = inner
    return None


def accepted(model: type[BaseModel]) -> list[str]:
    """The parameter names a step kind takes: its fields, under their alias when they have
    one (`validate:` is a field pydantic's BaseModel.validate would otherwise shadow)."""
    return [field.alias or name for name, field in model.model_fields.items()]


def params_for(model: type[BaseModel], params: dict) -> dict:
    """The parameters one step kind takes (probes batched in one step share `with`)."""
    names = accepted(model)
    return {k: v for k, v in params.items() if k in names}


def _validate_params(models: list[type[BaseModel]], params: dict, path: tuple, fail) -> None:
    """Unknown names always fail; values are type-checked now unless they hold references."""
    fields = [name for model in models for name in accepted(model)]
    for key in params:
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=2)
            hint = f" (did you mean {', '.join(close)}?)" if close else f" (accepted: {', '.join(fields) or 'none'})"
            raise fail(path + ("with", key), f"unknown parameter{hint}")
    for model in models:
        mine = params_for(model, params)
        literal = {k: v for k, v in mine.items() if not references.references(v)}
        try:
            model.model_validate(literal)
        except ValidationError as exc:
            for error in exc.errors():
                loc = tuple(error["loc"])
                if error["type"] == "missing" and loc and loc[0] in mine:
                    continue  # provided as a reference; checked when rendered
                raise fail(path + ("with",) + loc, error["msg"]) from None
