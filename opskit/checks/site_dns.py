"""Does the site's name resolve (from the controller) to this host, or to its CDN?

    - check: site_dns
      with: {resolvers: "{{ host.dns.resolvers }}"}

One A and one AAAA query for the host name of wordpress.url (or dns.domain) at each resolver
(the inventory's dns.resolvers; by default opskit.stack.dns.PUBLIC_RESOLVERS, never the machine's
own resolver), through opskit.checks.dns.ask. The diagnose rule compares the answers with the
host's addresses (its origin and SSH address, dns.expect) and the CDN's (a CNAME to cdn.hostname,
an address in the CDN's published ranges or cdn.ranges). The full propagation view is dns-check's.
It passes with what it saw (no resolver answering is the rule's to report); an error when there is
no name to ask.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from pydantic import BaseModel, ConfigDict, Field

from opskit.checks.dns import ask, parse_servers
from opskit.stack.dns import PUBLIC_RESOLVERS
from opskit.steps import Check, CheckResult, Context, Verdict, register


class SiteDnsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = None                                 # default: wordpress.url's host name, else dns.domain
    resolvers: list[str] = Field(default_factory=list)      # empty: PUBLIC_RESOLVERS
    timeout: float = Field(default=3.0, gt=0, le=60)


@register
class SiteDns(Check):
    name = "site_dns"
    needs_host = False
    Params = SiteDnsParams

    def run(self, params: SiteDnsParams, ctx: Context) -> CheckResult:
        name = params.name or ctx.host.site_hostname or ctx.host.dns.domain
        if not name:
            return CheckResult(Verdict.ERROR, "no name to resolve (no wordpress.url or dns.domain)")
        texts = params.resolvers or [r if isinstance(r, str) else r[0] for r in _public()]
        servers, bad = parse_servers([str(t) for t in texts])
        jobs = [(s, t) for s in servers for t in ("A", "AAAA")]
        with ThreadPoolExecutor(max_workers=min(8, len(jobs) or 1)) as pool:
            replies = list(pool.map(lambda job: ask(job[0], name, job[1], True, params.timeout), jobs))
        answers = {}
        for (server, qtype), reply in zip(jobs, replies):
            entry = answers.setdefault(server.text, {"resolver": server.text, "addresses": [], "cnames": [],
                                                     "status": [], "rcode": []})
            entry["status"].append(reply.status)
            entry["rcode"].append(reply.rcode)
            entry["addresses"] += reply.addresses
            entry["cnames"] += [hop.data[0] for hop in reply.chain if hop.type == "CNAME" and hop.data]
        results = list(answers.values())
        for entry in results:
            entry["answered"] = any(s == "ok" for s in entry["status"])
        observed = {"name": name, "resolvers": results, "malformed": [b.server for b in bad]}
        answered = [r for r in results if r["answered"]]
        if not answered:   # an observation for the rule (it warns), not a failed run
            return CheckResult(Verdict.PASSED, f"{name}: no resolver answered", observed, None,
                               tuple(f"{name} at {r['resolver']}: {', '.join(r['status'])}" for r in results))
        shown = "; ".join(f"{r['resolver']}: {', '.join(r['addresses']) or 'no address'}" for r in answered)
        return CheckResult(Verdict.PASSED, f"{name} → {shown}", observed, None,
                           tuple(f"{name} at {r['resolver']}: " + (", ".join(r["addresses"]) or "no address")
                                 + (f" (CNAME {', '.join(r['cnames'])})" if r["cnames"] else "") for r in answered))


def _public():
    return PUBLIC_RESOLVERS
