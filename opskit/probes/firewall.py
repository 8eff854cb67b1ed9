"""Firewall rules on the host that block or rate-limit the CDN's edges (opskit.stack.firewall).

The snippet prints, each where this user may read it (root, or `become: sudo`): `iptables-save`
and `ip6tables-save`, `nft list ruleset`, ufw's /etc/ufw/user.rules and user6.rules, CSF's
/etc/csf/csf.deny and /var/lib/csf/csf.tempban and the CT_LIMIT/CT_PORTS lines of
/etc/csf/csf.conf, and `fail2ban-client status` of every jail. Value:

    {"blocks": [Block JSON ...], "read": ["nft list ruleset", ...],
     "unreadable": {"iptables-save": "Permission denied (you must be root)", ...}}

A source that is not installed is neither read nor unreadable; one that refuses this user is
unreadable with the tool's own words. The rule (rules/diagnose.py) matches the blocks against the
CDN's ranges.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from opskit.probes._collect import Collected, collect, new_mark
from opskit.stack import firewall
from opskit.steps import Context, Probe, register

FILES = ("/etc/ufw/user.rules", "/etc/ufw/user6.rules", "/etc/csf/csf.deny", "/var/lib/csf/csf.tempban")
CSF_CONF = "/etc/csf/csf.conf"

SCRIPT = r"""
for t in iptables-save ip6tables-save; do
  command -v $t >/dev/null 2>&1 && run_block "$t" $t
done
command -v nft >/dev/null 2>&1 && run_block "nft list ruleset" nft list ruleset
for f in /etc/ufw/user.rules /etc/ufw/user6.rules /etc/csf/csf.deny /var/lib/csf/csf.tempban; do
  [ -e "$f" ] && show "$f" 4194304
done
[ -e /etc/csf/csf.conf ] && { [ -r /etc/csf/csf.conf ] && run_block "csf.conf" grep -E '^[[:space:]]*CT_(LIMIT|PORTS)[[:space:]]*=' /etc/csf/csf.conf || printf '%s denied %s\n' "$M" /etc/csf/csf.conf; }
if command -v fail2ban-client >/dev/null 2>&1; then
  run_block "fail2ban-client status" fail2ban-client status
  for j in $(fail2ban-client status 2>/dev/null | sed -n 's/.*Jail list:[[:space:]]*//p' | tr ',' ' '); do
    run_block "fail2ban-client status $j" fail2ban-client status "$j"
  done
fi
"""


class FirewallParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    become: str | None = None


@register
class FirewallRules(Probe):
    """iptables/nftables/ufw rules, CSF bans and CT_LIMIT, fail2ban bans: what may stop the CDN's edges."""

    name = "firewall"
    Params = FirewallParams

    def script(self, params: FirewallParams, ctx: Context) -> str:
        return collect(SCRIPT, new_mark(), become=params.become == "sudo")

    def parse(self, output: str, exit_status: int, params: FirewallParams) -> dict[str, Any]:
        return analyse(Collected.parse(output))


def analyse(got: Collected) -> dict[str, Any]:
    readings = firewall.Readings()
    for name, (status, text) in got.blocks.items():
        if status != 0:
            readings.unreadable[name] = _first_line(text) or f"exit {status}"
            continue
        readings.read.append(name)
        if name in ("iptables-save", "ip6tables-save"):
            readings.blocks += firewall.parse_iptables_save(text, name, kind=name.replace("-save", ""))
        elif name == "nft list ruleset":
            # iptables-nft's tables show in both: read once, from iptables-save / ip6tables-save
            managed = firewall.iptables_managed(text) if _read(got, "iptables-save", "ip6tables-save") else set()
            for save, family in (("iptables-save", "ip"), ("ip6tables-save", "ip6")):
                status, saved = got.blocks.get(save, (1, ""))
                managed |= {f"{family} {t[1:].strip()}" for t in saved.split("\n") if status == 0 and t.startswith("*")}
            readings.blocks += [b for b in firewall.parse_nft_ruleset(text, name)
                                if " ".join((b.chain or "").split()[:2]) not in managed]
        elif name == "csf.conf":
            limit = firewall.parse_csf_ct_limit(text, CSF_CONF)
            if limit is not None:
                readings.blocks.append(limit)
        elif name.startswith("fail2ban-client status "):
            readings.blocks += firewall.parse_fail2ban_status(text, name)
    for path, text in got.files.items():
        readings.read.append(path)
        if path.startswith("/etc/ufw/"):
            readings.blocks += firewall.parse_iptables_save(text, path, kind="ufw")
        else:
            readings.blocks += firewall.parse_csf_deny(text, path)
    for path, reason in got.unreadable.items():
        if reason != "no such file":
            readings.unreadable[path] = reason
    return {"blocks": [b.to_json() for b in readings.blocks], "read": readings.read,
            "unreadable": readings.unreadable, "become": got.become}


def _read(got: Collected, *names: str) -> bool:
    return any(got.blocks.get(n, (1, ""))[0] == 0 for n in names)


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.split("\n") if line.strip()), "")
