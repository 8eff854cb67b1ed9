"""The value a setting really has at one place of a config, and where it comes from.

    EffectiveValue("120s", directive, "set")       # set in the block asked about
    EffectiveValue("300s", directive, "inherited") # set in an enclosing block (nginx http > server)
    EffectiveValue("60s", None, "default")         # set nowhere: the software's default (None: unknown)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Source = Literal["set", "inherited", "default"]


@dataclass(frozen=True)
class EffectiveValue:
    value: str | None
    directive: Any | None   # the nginx/php-fpm/php.ini directive that sets it; None for a default
    source: Source
