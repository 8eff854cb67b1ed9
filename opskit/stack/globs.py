"""glob(3) over a map of files instead of a disk: how nginx and php-fpm expand an
`include` of a pattern, applied to the files a probe read from the host.

    >>> expand("/etc/nginx/sites-enabled/*", ["/etc/nginx/sites-enabled/b", "/etc/nginx/sites-enabled/a",
    ...                                        "/etc/nginx/sites-enabled/.a.swp", "/etc/nginx/nginx.conf"])
    ['/etc/nginx/sites-enabled/a', '/etc/nginx/sites-enabled/b']
"""

from __future__ import annotations

import fnmatch
import posixpath
from typing import Iterable

MAGIC = "*?["   # what makes nginx (ngx_conf_include) and glob(3) treat a path as a pattern


def has_magic(path: str) -> bool:
    return any(char in path for char in MAGIC)


def glob_matches(pattern: str, path: str) -> bool:
    """glob(3) with no flags: segment by segment ('*' never crosses a '/'), and a
    wildcard never matches a leading dot."""
    wanted = posixpath.normpath(pattern).split("/")
    parts = posixpath.normpath(path).split("/")
    if len(wanted) != len(parts):
        return False
    for want, part in zip(wanted, parts):
        if part.startswith(".") and not want.startswith("."):
            return False
        if not fnmatch.fnmatchcase(part, want):
            return False
    return True


def expand(pattern: str, paths: Iterable[str]) -> list[str] | None:
    """The paths `pattern` names, sorted as glob(3) sorts them (bytes, the C locale);
    a plain path gives itself, or None when it is not among `paths`."""
    if not has_magic(pattern):
        wanted = posixpath.normpath(pattern)
        return next(([p] for p in paths if posixpath.normpath(p) == wanted), None)
    return sorted((p for p in paths if glob_matches(pattern, p)), key=lambda p: p.encode("utf-8", "surrogateescape"))
