"""Durations like 90s, 15m, 1h30m, 2h (a bare number is seconds)."""

from __future__ import annotations

import re

_PART = re.compile(r"([0-9]+)\s*([smhd])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# A hold is a `sleep` and a crontab time on the host: a week is already far longer than any
# hold an admin means (a typo like 15d for 15m is refused), and huge numbers never reach the host.
MAX_HOLD = 7 * 86400
_MAX_DIGITS = 12   # no sane duration needs more; int() of thousands of digits is slow (and refused)


def parse_duration(text: str | int, maximum: int | None = None) -> int:
    """Seconds in a duration; raises ValueError with the accepted forms, or when it is over `maximum`."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise ValueError("a duration cannot be negative")
        return _bounded(text, text, maximum)
    raw = str(text).strip().lower()
    if raw.isascii() and raw.isdigit():
        if len(raw) > _MAX_DIGITS:
            raise _too_long(text, maximum)
        return _bounded(int(raw), text, maximum)
    compact = raw.replace(" ", "")
    parts = _PART.findall(compact)
    if not parts or "".join(n + u for n, u in parts) != compact:
        raise ValueError(f"not a duration: {text!r} (use forms like 90s, 15m, 1h30m)")
    if any(len(n) > _MAX_DIGITS for n, _ in parts):
        raise _too_long(text, maximum)
    return _bounded(sum(int(n) * _UNIT[u] for n, u in parts), text, maximum)


def _bounded(seconds: int, text: str | int, maximum: int | None) -> int:
    if maximum is not None and seconds > maximum:
        raise _too_long(text, maximum)
    return seconds


def _too_long(text: str | int, maximum: int | None) -> ValueError:
    shown = repr(text) if len(str(text)) <= 40 else repr(str(text)[:40]) + "…"
    return ValueError(f"too long: {shown} is more than {_long(maximum)}" if maximum
                      else f"too long: {shown} (more than {_MAX_DIGITS} digits)")


def _long(seconds: int) -> str:
    """7 days, 2 hours, 90s: for limits in messages."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds}s"


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s" if secs else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
