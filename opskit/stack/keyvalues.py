"""`key=value` lines, the plainest output a probe's sh snippet can print.

    >>> key_values("os=Debian 12\\nnoise\\nhome=/home/a b \\n")
    {'os': 'Debian 12', 'home': '/home/a b'}
"""

from __future__ import annotations


def key_values(output: str) -> dict[str, str]:
    """Pure: 'key=value' lines → dict (later keys win; other lines ignored)."""
    values: dict[str, str] = {}
    for line in output.splitlines():
        key, sep, value = line.partition("=")
        if sep and key and " " not in key:
            values[key.strip()] = value.strip()
    return values
