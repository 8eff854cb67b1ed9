"""The --json document's published schema: generated from the typed models, shipped in the
package, and strict enough to refuse a document that breaks the contract. (Real documents
are validated wherever a test reads one: tests/conftest.py CliResult.json.)"""

import copy

import pytest

from opskit.document import SCHEMA_VERSION, json_schema, shipped_schema
from opskit.findings import Evidence, Family, Finding, Severity
from opskit.report import json_document
from opskit.transaction.outcome import ChangeRecord, HostOutcome, Status
from tests.conftest import validate_run_document


def test_the_shipped_schema_is_the_one_the_models_generate():
    assert shipped_schema() == json_schema(), "regenerate: python -m opskit.document > opskit/schema/run-document.schema.json"


def _document() -> dict:
    outcome = HostOutcome("site1", Status.ROLLED_BACK, findings=[Finding(
        "fpm-timeout", Severity.ERROR, "php-fpm killed the script", (Evidence("WARNING: child 12 ... terminated",
                                                                              "/var/log/php-fpm.log", 40),),
        "run tune-timeouts", Family.KILL)], changes=[ChangeRecord(0, "rename", "a → b", state="undone")])
    outcome.steps.append({"step": "Rename", "id": "rename", "kind": "change", "status": "changed", "detail": "",
                          "at": 1.0, "seconds": 0.2})
    outcome.rollback = {"reason": "hold_ended", "state": "rolled_back", "by": "controller",
                        "steps": {"0": {"outcome": "undone", "message": "renamed back"}}}
    return json_document("20261201-120000-abcd", "disable-cdn", {"site1": outcome}, check_mode=False)


def test_a_document_made_by_the_report_validates_and_carries_the_version():
    document = _document()
    assert document["schema_version"] == SCHEMA_VERSION
    validate_run_document(document)


@pytest.mark.parametrize("breakage", [
    lambda d: d["hosts"]["site1"].__setitem__("status", "would change"),
    lambda d: d["hosts"]["site1"]["steps"][0].__setitem__("status", "would change"),
    lambda d: d["hosts"]["site1"]["findings"][0].__setitem__("severity", "bad"),
    lambda d: d["hosts"]["site1"].pop("findings"),
    lambda d: d.__setitem__("schema_version", 2),
    lambda d: d["hosts"]["site1"]["changes"][0].__setitem__("state", "gone"),
])
def test_a_document_that_breaks_the_contract_is_refused(breakage):
    document = copy.deepcopy(_document())
    breakage(document)
    with pytest.raises(AssertionError, match="does not match"):
        validate_run_document(document)
