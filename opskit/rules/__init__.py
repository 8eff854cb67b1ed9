"""Rules: pure functions from typed facts to findings (see opskit.steps.Rule).

One module per subject (wordpress, opskit, later timeouts, kills, overload, cdn, firewall,
dns). A rule never touches the network, the clock or the host: everything it needs comes
in through its Params, so it is tested from data in tests/captures/rules/<rule>/.
"""
