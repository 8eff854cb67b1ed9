"""Basic checks: a path's state on the host, and a required condition.
(The http check lives in opskit/checks/http.py.)"""

from __future__ import annotations

import stat as stat_module
from typing import Literal

from pydantic import BaseModel, ConfigDict

# importable from here as before the http check moved out (tests/unit/test_wordpress.py)
from opskit.checks.http import count_cdn_urls, fetch, http_target
from opskit.steps import Check, CheckResult, Context, Verdict, register
from opskit.references import truthy

__all__ = ["PathParams", "PathState", "RequireParams", "Require", "count_cdn_urls", "fetch", "http_target"]


class PathParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str
    state: Literal["present", "absent", "file", "directory"] = "present"


@register
class PathState(Check):
    name = "path"
    Params = PathParams

    def run(self, params: PathParams, ctx: Context) -> CheckResult:
        path = ctx.path(params.path)
        attrs = ctx.session.stat(path)
        if attrs is None:
            observed = "absent"
        elif stat_module.S_ISDIR(attrs.st_mode or 0):
            observed = "directory"
        else:
            observed = "file"
        wanted = params.state
        ok = observed == wanted or (wanted == "present" and observed != "absent")
        verdict = Verdict.PASSED if ok else Verdict.FAILED
        return CheckResult(verdict, f"{path} is {observed} (expected {wanted})", observed, wanted, (f"stat {path}: {observed}",))


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
