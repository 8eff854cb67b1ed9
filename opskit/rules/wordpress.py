"""Rules about WordPress itself: what to do with the CDN Enabler plugin, and what to tell.

    - rule: cdn_enabler
      with: {plugin: "{{ steps.cdn }}"}       # the wp_plugin probe's value

decide() is also what the wp_plugin probe reports as should_disable/reason (the
playbook's `when:` reads it there).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from opskit.findings import Family, Finding, Severity
from opskit.steps import Rule, register


class PluginState(BaseModel):
    """The part of the wp_plugin probe's value the rules read."""

    model_config = ConfigDict(extra="ignore")
    plugin: str
    plugin_dir: str
    folder: str
    installed: bool
    renamed_by: list[str]
    state_known: bool
    state_error: str | None = None
    active: bool | None = None
    network_active: bool | None = None
    plugin_dir_writable: bool


class CdnEnablerFacts(BaseModel):
    model_config = ConfigDict(extra="forbid")
    plugin: PluginState


@register
class CdnEnabler(Rule):
    """What the admin should know about the CDN Enabler plugin before it is disabled."""

    name = "cdn_enabler"
    Params = CdnEnablerFacts

    def evaluate(self, facts: CdnEnablerFacts) -> list[Finding]:
        return plugin_findings(facts.plugin.model_dump())


def decide(value: dict) -> tuple[bool, str]:
    """Pure rule: should the plugin's folder be renamed away, and why (not)."""
    if not value["installed"]:
        if value["renamed_by"]:
            return False, f"already renamed away by opskit run {', '.join(value['renamed_by'])}"
        return False, f"not installed in {value['plugin_dir']}"
    if value["state_known"] and not (value["active"] or value["network_active"]):
        return False, "installed but not active: renaming it would change nothing"
    if value["state_known"]:
        where = "network-active" if value["network_active"] else "active"
        return True, f"{where}; its folder will be renamed"
    return True, "installed; activation state unknown, its folder will be renamed anyway"


def plugin_findings(value: dict) -> list[Finding]:
    """Pure rule: what to tell the admin about the plugin's state."""
    plugin = value["plugin"]
    out = []
    if not value["installed"] and value["renamed_by"]:
        runs = ", ".join(value["renamed_by"])
        out.append(Finding("cdn-enabler-already-disabled", Severity.WARNING,
                           f"{plugin} is already renamed away by opskit run {runs}; nothing changed",
                           tuple(f"{value['plugin_dir']}/.{plugin.split('/')[0]}.opskit-{r}" for r in value["renamed_by"]),
                           f"`opskit rollback {value['renamed_by'][0]}` restores it (or `opskit runs --all` to see that run)", family=Family.CDN))
    elif not value["installed"]:
        out.append(Finding("cdn-enabler-not-installed", Severity.INFO,
                           f"{plugin} is not installed; nothing to disable", (f"no {value['folder']}",),
                           "the CDN is not rewriting URLs through this plugin; look at the CDN or DNS instead", family=Family.CDN))
    elif value["state_known"] and not (value["active"] or value["network_active"]):
        out.append(Finding("cdn-enabler-inactive", Severity.INFO,
                           f"{plugin} is installed but inactive; nothing changed", (f"active_plugins lacks {plugin}",),
                           "the plugin is not in the path of this site's pages", family=Family.CDN))
    if not value["state_known"]:
        out.append(Finding("plugin-state-unknown", Severity.WARNING,
                           "could not read the plugin's activation state; a rollback renames the folder back "
                           "but cannot check that WordPress still has it active",
                           (value["state_error"] or "",), "install WP-CLI or PHP CLI on the host, or check wp-admin after the run", family=Family.CDN))
    if value["installed"] and not value["plugin_dir_writable"]:
        out.append(Finding("plugins-dir-not-writable", Severity.ERROR,
                           f"{value['plugin_dir']} is not writable by the SSH user: the folder cannot be renamed",
                           (value["plugin_dir"],), "run as the user that owns the WordPress files", family=Family.CDN))
    return out
