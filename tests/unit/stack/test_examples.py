"""The examples in the docstrings of opskit/stack's small modules run as written."""

from __future__ import annotations

import doctest

import pytest

from opskit.stack import globs, ini, keyvalues, lines


@pytest.mark.parametrize("module", [globs, ini, keyvalues, lines], ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
