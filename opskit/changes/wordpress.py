"""WordPress changes: keep a plugin's activation state across a folder rename.

Renaming a plugin's folder away makes WordPress drop it from active_plugins the
next time anyone opens wp-admin; renaming it back does not re-activate it. This
change records the activation state before the rename (applying it changes
nothing) and its undo — which runs after the rename is undone — re-activates the
plugin if WordPress dropped it, network-wide where it was network-active.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from opskit.stack import wordpress
from opskit.shell import quote
from opskit.steps import Change, Context, Plan, register


class ActivationParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    plugin: dict          # the wp_plugin probe's value
    root: str             # WordPress root


@register
class PluginActivation(Change):
    """Remember whether a plugin is active; undo restores that state."""

    name = "wp_plugin_activation"
    Params = ActivationParams

    def plan(self, params: ActivationParams, ctx: Context) -> Plan:
        p = params.plugin
        plugin = p["plugin"]
        if not p.get("state_known"):
            state = "unknown"
        elif p.get("network_active"):
            state = "network-active"
        elif p.get("active"):
            state = "active"
        else:
            state = "inactive"
        record = {
            "plugin": plugin,
            "root": ctx.path(params.root),
            "site_host": p.get("site_host"),
            "was_active": p.get("active"),
            "was_network_active": p.get("network_active"),
            "runner": p.get("runner"),
            "runner_path": p.get("runner_path"),
            "state": state,
        }
        return Plan(f"record {plugin} as {state}; restore that state on undo", record=record,
                    diff=f"  {plugin}: {state} (kept {state} after undo)\n")

    def apply_script(self, record: dict) -> str:
        """Nothing to change: the record, written ahead, is the point."""
        return f"applied {quote('recorded the activation state of ' + record['plugin'])}"

    def undo_script(self, record: dict) -> str:
        return activation_undo(record)


def activation_undo(record: dict) -> str:
    """sh body: re-activate the plugin if WordPress dropped it while it was away."""
    plugin = record["plugin"]
    if record["state"] == "unknown":
        return f"not_applied {quote(f'activation state of {plugin} was not recorded (no WP-CLI/PHP); check wp-admin')}"
    if record["state"] == "inactive":
        return f"not_applied {quote(f'{plugin} was inactive before; nothing to restore')}"
    network = record["state"] == "network-active"
    command = wordpress.php_command(record["runner"], record["runner_path"], record["root"], record["site_host"],
                                    wordpress.REACTIVATE_PHP,
                                    {"OPSKIT_PLUGIN": plugin, "OPSKIT_NETWORK": "1" if network else "0"})
    where = "network-wide" if network else "on the site"
    return (
        f"out=$({command} 2>&1)\n"
        "case $out in\n"
        f"  *'OPSKIT-ACT activated'*) undone {quote(f're-activated {plugin} {where}: WordPress had dropped it while its folder was away')} ;;\n"
        f"  *'OPSKIT-ACT already'*) not_applied {quote(f'{plugin} is still active {where}')} ;;\n"
        f"  *'OPSKIT-ACT missing'*) failed {quote(f'cannot re-activate {plugin}: its main file is missing')} ;;\n"
        f"  *) failed {quote(f'could not check or restore {plugin}:')} \"$(printf '%s' \"$out\" | tail -n 2 | tr '\\n' ' ')\" ;;\n"
        "esac"
    )
