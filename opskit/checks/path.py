"""The path check: is a file or folder on the host present, absent, a file or a folder."""

from __future__ import annotations

import stat as stat_module
from typing import Literal

from pydantic import BaseModel, ConfigDict

from opskit.steps import Check, CheckResult, Context, Verdict, register


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
