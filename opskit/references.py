"""`{{ reference }}` substitution for playbook parameters — lookups only, never code.

A reference is a dotted path into the context: host.wordpress.root,
steps.wp.root, run.id. A parameter that is exactly one reference takes the
referenced value as is (a list stays a list, None stays None); otherwise each
reference is turned into text inside the string.

A step's `when:` is a Condition, one reference or `{{ not REFERENCE }}`: rendering it
gives True or False by `truthy`, which reads text the way YAML does ("false", "no",
"off", "0", "" and "null" are false), since host.vars and probe results often hold such text.
"""

from __future__ import annotations

import re
from typing import Any

PATH = r"[A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*"
REF = re.compile(r"\{\{\s*(" + PATH + r")\s*\}\}")
NOT_REF = re.compile(r"\{\{\s*not\s+(" + PATH + r")\s*\}\}")   # `when:` only
ROOTS = ("host", "steps", "run")


class TemplateError(ValueError):
    pass


FALSE_TEXT = frozenset({"", "false", "no", "off", "0", "none", "null", "~"})


def truthy(value: Any) -> bool:
    """Python truthiness, except that text means what it says in YAML: "false" is false."""
    if isinstance(value, str):
        return value.strip().lower() not in FALSE_TEXT
    return bool(value)


class Condition(str):
    """The text of a `when:`; render() turns it into a bool (see truthy). Still a str,
    so it prints, compares and serialises as the text the playbook has."""

    __slots__ = ()

    @property
    def parts(self) -> tuple[bool, str]:
        """(negated, the reference's path); ValueError unless it is `{{ ref }}` or `{{ not ref }}`."""
        return condition_parts(self)


def condition_parts(text: str) -> tuple[bool, str]:
    for negated, pattern in ((False, REF), (True, NOT_REF)):
        found = pattern.fullmatch(text.strip())
        if found:
            return negated, found.group(1)
    raise ValueError(f"not a condition: {text!r}")


def references(value: Any) -> list[str]:
    """Every reference used anywhere in a (nested) parameter value."""
    if isinstance(value, Condition):
        return [value.parts[1]]
    if isinstance(value, str):
        if "{{" in REF.sub("", value):
            raise TemplateError(f"malformed reference in {value!r} (expected {{{{ host.field }}}} or {{{{ steps.ID.field }}}})")
        return REF.findall(value)
    if isinstance(value, dict):
        return [r for v in value.values() for r in references(v)]
    if isinstance(value, list):
        return [r for v in value for r in references(v)]
    return []


def lookup(path: str, context: dict[str, Any]) -> Any:
    node: Any = context
    walked = []
    for part in path.split("."):
        walked.append(part)
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise TemplateError(f"{{{{ {path} }}}}: nothing at {'.'.join(walked)}")
    return node


def render(value: Any, context: dict[str, Any]) -> Any:
    if isinstance(value, Condition):
        negated, path = value.parts
        return truthy(lookup(path, context)) != negated
    if isinstance(value, str):
        whole = REF.fullmatch(value.strip())
        if whole:
            return lookup(whole.group(1), context)

        def text(match: re.Match) -> str:
            found = lookup(match.group(1), context)
            return "" if found is None else str(found)

        return REF.sub(text, value)
    if isinstance(value, dict):
        return {k: render(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, context) for v in value]
    return value
