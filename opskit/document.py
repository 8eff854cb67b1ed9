"""The `opskit run --json` document as typed models, and its published JSON Schema.

Other tools read this document, so its shape is a contract: fields are added, never
renamed, and `schema_version` moves only when a field changes meaning. The schema shipped
with the package (opskit/schema/run-document.schema.json) is generated from these models
(`python -m opskit.document > opskit/schema/run-document.schema.json`); a test keeps the
two equal and every `--json` document the test suite produces is validated against it.
Objects allow more keys than listed (a playbook may add its own, e.g. `timeouts`).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from opskit.findings import Family
from opskit.transaction.outcome import SCHEMA_VERSION, Status, StepStatus

SCHEMA_FILE = "schema/run-document.schema.json"


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class EvidenceDoc(_Open):
    text: str
    file: str | None = None
    line: int | None = None


class FindingDoc(_Open):
    cause: str = Field(description="stable machine name, e.g. cdn-enabler-active, fpm-timeout")
    severity: Literal["info", "warning", "error", "critical"]
    summary: str
    evidence: list[str] = Field(description='the same evidence as text, "FILE:LINE: text" when from a file')
    advice: str
    family: Family | None
    evidence_detail: list[EvidenceDoc]


class ChangeDoc(_Open):
    index: int | None = Field(description="position in the host's journal; null when never applied")
    kind: str
    summary: str
    diff: str
    state: Literal["planned", "noop", "blocked", "applied", "undone", "not_applied", "conflict", "failed", "kept"]
    detail: str


class StepDoc(_Open):
    step: str = Field(description="the step's label")
    id: str | None
    kind: Literal["probe", "change", "check", "rule"]
    status: StepStatus
    detail: str
    at: float = Field(description="controller epoch seconds when it ended")
    seconds: float | None = None
    value: Any = None


class RollbackStepDoc(_Open):
    outcome: str
    message: str


class RollbackDoc(_Open):
    reason: str = Field(description="hold_ended, step_failed, conflict, interrupted, connection_lost, rollback, ...")
    state: str
    by: str = Field(description="controller or guard")
    steps: dict[str, RollbackStepDoc] = Field(default_factory=dict)


class HostDoc(_Open):
    status: Status
    error: str | None
    findings: list[FindingDoc]
    changes: list[ChangeDoc]
    steps: list[StepDoc]
    rollback: RollbackDoc | None
    deadline: float | None = Field(description="controller epoch seconds when the host's guard undoes")
    guard: str | None
    seconds: float
    home: str | None
    not_predicted: list[str] = Field(default_factory=list, description="--check: what it could not tell beforehand")


class RunDocument(_Open):
    schema_version: Literal[1] = SCHEMA_VERSION
    run_id: str
    playbook: str
    check: bool
    hosts: dict[str, HostDoc]


def json_schema() -> dict:
    schema = RunDocument.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://opskit.invalid/schema/run-document.schema.json"
    return schema


def shipped_schema() -> dict:
    from importlib.resources import files

    return json.loads(files("opskit").joinpath(SCHEMA_FILE).read_text(encoding="utf-8"))


if __name__ == "__main__":
    print(json.dumps(json_schema(), indent=2, sort_keys=True))
