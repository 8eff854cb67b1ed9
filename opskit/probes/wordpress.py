"""WordPress plugin facts: where the plugins folder is, whether a plugin is
installed, renamed away by an earlier opskit run, and active."""

from __future__ import annotations

import posixpath
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from opskit.stack import wordpress
from opskit.findings import Finding
from opskit.stack.keyvalues import key_values
from opskit.rules.wordpress import decide, plugin_findings
from opskit.shell import quote
from opskit.steps import Context, Probe, register

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


class PluginParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    root: str                     # WordPress root (from the wordpress probe)
    slug: str = "cdn-enabler"
    option: str = "cdn_enabler"   # the plugin's settings option (for the CDN hostname)
    site_url: str | None = None   # the site's public URL (multisite picks the site by its host)
    cdn_hostname: str | None = None   # from the inventory, used when the option cannot be read
    run_id: str = "check"         # names the hidden folder: .SLUG.opskit-RUN

    @field_validator("slug")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not SLUG_RE.match(v):
            raise ValueError("a plugin slug is lowercase letters, digits, '-' and '_'")
        return v

    @property
    def plugin_file(self) -> str:
        return f"{self.slug}/{self.slug}.php"

    @property
    def hidden_prefix(self) -> str:
        return f".{self.slug}.opskit-"


@register
class WpPlugin(Probe):
    """One plugin's state, read in one exec.

    Example: {"plugin_dir": "/home/s/public_html/wp-content/plugins", "plugin_dir_source": "wordpress",
              "installed": True, "folder": ".../plugins/cdn-enabler",
              "hidden_folder": ".../plugins/.cdn-enabler.opskit-RUN", "renamed_by": [],
              "active": True, "network_active": False, "multisite": False, "state_known": True,
              "runner": "php", "runner_path": "/usr/bin/php", "cdn_hostname": "cdn.example.test",
              "should_disable": True, "reason": "active; its folder will be renamed"}
    active / network_active are None when neither WP-CLI nor PHP could load WordPress
    (state_known False; state_error says why).
    """

    name = "wp_plugin"
    Params = PluginParams

    def script(self, params: PluginParams, ctx: Context) -> str:
        root = ctx.path(params.root)
        q = quote(root)
        env = {"OPSKIT_PLUGIN": params.plugin_file, "OPSKIT_OPTION": params.option}
        host = wordpress.site_host(params.site_url)
        via_wp = wordpress.php_command("wp", "__RUNNER__", root, host, wordpress.PLUGIN_STATE_PHP, env)
        via_php = wordpress.php_command("php", "__RUNNER__", root, host, wordpress.PLUGIN_STATE_PHP, env)
        runner = quote("__RUNNER__")
        via_wp, via_php = (c.replace(runner, '"$runner_path"') for c in (via_wp, via_php))
        slug, hidden = quote(params.slug), quote(params.hidden_prefix)
        return f"""{wordpress.FIND_RUNNER}
out=""
case $runner in
  wp) out=$({via_wp} 2>&1 | tail -n 40) ;;
  php) out=$({via_php} 2>&1 | tail -n 40) ;;
esac
printf '%s\\n' "$out" | sed 's/^/state: /'
pd=$(printf '%s\\n' "$out" | sed -n 's/^OPSKIT-PLUGIN-DIR //p' | tail -n 1)
cfg={q}/wp-config.php; [ -f "$cfg" ] || cfg={q}/../wp-config.php
if [ -z "$pd" ]; then
    # PHP keeps a constant's first define; a plain absolute path is all sh can read safely
  pd=$(sed -n "s/^[[:space:]]*define([[:space:]]*['\\"]WP_PLUGIN_DIR['\\"][[:space:]]*,[[:space:]]*['\\"]\\(\\/[^'\\"]*\\)['\\"].*/\\1/p" "$cfg" 2>/dev/null | head -n 1)
  if [ -n "$pd" ]; then echo "plugin_dir_source=wp-config"; else pd={q}/wp-content/plugins; echo "plugin_dir_source=default"; fi
else echo "plugin_dir_source=wordpress"; fi
printf 'plugin_dir=%s\\n' "$pd"
[ -d "$pd" ] && echo "plugin_dir_exists=1"
[ -d "$pd"/{slug} ] && echo "installed=1"
[ -f "$pd"/{slug}/{slug}.php ] && echo "main_file=1"
for d in "$pd"/{hidden}*; do [ -e "$d" ] && printf 'hidden=%s\\n' "${{d##*/}}"; done
[ -w "$pd" ] && echo "plugin_dir_writable=1"
true"""

    def parse(self, output: str, exit_status: int, params: PluginParams) -> dict[str, Any]:
        kv = key_values(output)
        state_lines = "\n".join(line[7:] for line in output.splitlines() if line.startswith("state: "))
        state = wordpress.parse_marker_json(state_lines)
        plugin_dir = kv.get("plugin_dir") or ""
        hidden = [line[7:] for line in output.splitlines() if line.startswith("hidden=")]
        renamed_by = [name[len(params.hidden_prefix):] for name in hidden]
        runner = kv.get("runner", "none")
        value: dict[str, Any] = {
            "plugin": params.plugin_file,
            "plugin_dir": plugin_dir,
            "plugin_dir_source": kv.get("plugin_dir_source"),
            "plugin_dir_writable": kv.get("plugin_dir_writable") == "1",
            "installed": kv.get("installed") == "1",
            "folder": posixpath.join(plugin_dir, params.slug),
            "hidden_folder": posixpath.join(plugin_dir, params.hidden_prefix + params.run_id),
            "renamed_by": renamed_by,
            "runner": runner,
            "runner_path": kv.get("runner_path"),
            "state_known": state is not None,
            "state_error": None if state is not None else _state_error(runner, state_lines),
            "active": state.get("active") if state else None,
            "network_active": state.get("network_active") if state else None,
            "multisite": state.get("multisite") if state else None,
            "wp_version": state.get("wp_version") if state else None,
            "cdn_hostname": (state or {}).get("cdn_hostname") or params.cdn_hostname,
            "site_host": wordpress.site_host(params.site_url),
        }
        value["should_disable"], value["reason"] = decide(value)
        return value

    def findings(self, value: dict, params: PluginParams) -> list[Finding]:
        """The cdn_enabler rule's findings for this value (playbooks call the rule as a step)."""
        return plugin_findings(value)


def _state_error(runner: str, text: str) -> str:
    if runner == "none":
        return "neither WP-CLI nor PHP CLI is on the host: the plugin's activation state cannot be read or restored"
    # PHP's own message ("PHP Fatal error: ...") says more than the stack trace after it
    fatal = [line.strip() for line in text.splitlines() if re.search(r"\b(fatal|parse) error\b", line, re.I)]
    detail = fatal[0] if fatal else " / ".join(line for line in text.splitlines()[-3:] if line.strip())
    return f"{runner} could not load WordPress" + (f": {detail}" if detail else "")
