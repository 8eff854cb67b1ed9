"""Probes: read-only facts, each a POSIX sh snippet plus a pure parser of its output
(see opskit.steps.Probe). The parsers are thin adapters over opskit/stack/; batch.py sends
all of a step's probes to the host in one exec."""

from opskit.probes.batch import Section, build_batch, new_fence, split_batch  # noqa: F401
