"""One folder of malformed files per loader, each file a situation, described in expected.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


class BadFiles:
    def __init__(self, folder: Path):
        self.folder = folder
        self.expected = json.loads((folder / "expected.json").read_text())
        self.files = sorted(p.name for p in folder.glob("*.yaml"))

    def described(self) -> set[str]:
        return {k for k in self.expected if not k.startswith("_")}

    def cases(self) -> list:
        """pytest params (name, expectation); a "bug" key makes the case a strict xfail."""
        out = []
        for name in self.files:
            want = self.expected.get(name, {})
            marks = [pytest.mark.xfail(strict=True, reason="BUG: " + want["bug"])] if "bug" in want else []
            out.append(pytest.param(name, want, id=name.removesuffix(".yaml"), marks=marks))
        return out
