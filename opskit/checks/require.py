"""The require check: stop the transaction, before anything changes, unless a fact holds.
It reads only its own parameters, so it never needs the host."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from opskit.references import truthy
from opskit.steps import Check, CheckResult, Context, Verdict, register


class RequireParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: object = None          # usually a {{ reference }}; passes when true (references.truthy: "false" is not)
    message: str = "a required condition is false"


@register
class Require(Check):
    """Stop the transaction (before anything changes) unless a fact holds."""

    name = "require"
    needs_host = False
    Params = RequireParams

    def run(self, params: RequireParams, ctx: Context) -> CheckResult:
        if truthy(params.value):
            return CheckResult(Verdict.PASSED, "condition holds", params.value, True)
        return CheckResult(Verdict.FAILED, params.message, params.value, True)
