"""Checks: verifications that answer passed / failed / error (see opskit.steps.Check) —
http.py from the controller (origin by address with SNI, public URL), path.py on the host,
require.py on a fact already known. DNS and config tests come next to them."""
