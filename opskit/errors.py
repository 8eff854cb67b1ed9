"""opskit's error tree and exit codes.

    OpskitError                  every error opskit expects and explains in one line
    ├── InputError               bad inventory, playbook, flag or name      → exit 2
    │   ├── InventoryError
    │   └── PlaybookError
    ├── TransportError           anything between us and a host             → the host fails alone
    │   ├── UnreachableError     DNS, refused, timed out, lost
    │   ├── HostKeyError         unknown or changed host key
    │   └── AuthError            no key or agent identity was accepted
    ├── RemoteCommandError       the host answered "no": exit status, permission denied,
    │                            no space, no such file (the step fails; the connection is fine)
    ├── ConflictError            someone else changed what opskit was about to change or undo
    └── LockedError              another run holds the host's lock
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0            # every host ended fine (ok, changed, kept, held, or rolled back at the end of its hold)
    HOST_FAILED = 1   # some host failed, was unreachable, hit a conflict or was rolled back by a failure
    USAGE = 2         # bad command line, inventory or playbook: nothing was done
    INTERRUPTED = 130  # Ctrl-C / SIGTERM: every host was rolled back


class OpskitError(Exception):
    """An error we expect and can explain in one line (no traceback)."""

    exit_code = ExitCode.HOST_FAILED


class InputError(OpskitError):
    exit_code = ExitCode.USAGE


class InventoryError(InputError):
    pass


class PlaybookError(InputError):
    pass


class TransportError(OpskitError):
    pass


class UnreachableError(TransportError):
    pass


class HostKeyError(TransportError):
    pass


class AuthError(TransportError):
    pass


class RemoteCommandError(OpskitError):
    def __init__(self, message: str, result=None):
        super().__init__(message)
        self.result = result


class LockedError(OpskitError):
    pass


class ConflictError(OpskitError):
    pass
