"""One host's transaction: execute steps (execute.py), write ahead and arm (writeahead.py),
the endings (endings.py: finish, hold, keep, roll back, after-rollback checks), the outcome
types (outcome.py: Status, ChangeRecord, HostOutcome, exit code), the session and hello
(connect.py), and held runs seen from any process (held.py: runs, confirm, rollback).
lifecycle.py puts them together as `Transaction`."""
