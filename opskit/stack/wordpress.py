"""Running PHP inside a host's WordPress: through WP-CLI when the host has it,
else through PHP CLI loading WordPress's own wp-load.php.

Never raw SQL: object caches would hide it, and WordPress's own functions keep
multisite, serialization and hooks right. Output we need is printed on lines
starting with a marker, so notices and plugin noise around it do not matter.
"""

from __future__ import annotations

import json
import re

from opskit.shell import quote

# Finds wp (WP-CLI) or php: sets $runner (wp|php|none) and $runner_path, and prints both.
FIND_RUNNER = r"""PATH="$PATH:$HOME/bin:$HOME/.local/bin:/usr/local/bin:/usr/bin:/opt/cpanel/composer/bin"
runner=none; runner_path=""
if runner_path=$(command -v wp 2>/dev/null) && "$runner_path" --info >/dev/null 2>&1; then runner=wp
elif runner_path=$(command -v php 2>/dev/null); then runner=php
else runner_path=""; fi
printf 'runner=%s\nrunner_path=%s\n' "$runner" "$runner_path"
"""

# Loaded before the snippet when plain PHP CLI is the runner: looks like a request for
# the site's home page, so multisite picks the right site.
_PHP_BOOT = (
    "error_reporting(E_ERROR | E_PARSE); ini_set('display_errors', 'stderr');"
    "$h = getenv('OPSKIT_WP_HOST') ?: 'localhost';"
    "$_SERVER['HTTP_HOST'] = $h; $_SERVER['SERVER_NAME'] = $h; $_SERVER['REQUEST_URI'] = '/';"
    "$_SERVER['REQUEST_METHOD'] = 'GET'; $_SERVER['SERVER_PORT'] = 80;"
    "define('WP_USE_THEMES', false); ob_start(); require getenv('OPSKIT_WP_ROOT') . '/wp-load.php'; ob_end_clean();"
)


def php_command(runner: str, runner_path: str, root: str, site_host: str | None, code: str, env: dict[str, str] | None = None) -> str:
    """Shell command running `code` with WordPress loaded at `root`, as the login user."""
    variables = {"OPSKIT_WP_ROOT": root, "OPSKIT_WP_HOST": site_host or "localhost", **(env or {})}
    prefix = " ".join(f"{k}={quote(v)}" for k, v in variables.items())
    if runner == "wp":
        url = f"--url={quote('http://' + site_host + '/')} " if site_host else ""
        return f"cd {quote(root)} && {prefix} {quote(runner_path)} --path={quote(root)} {url}--skip-themes --skip-plugins eval {quote(code)}"
    return f"cd {quote(root)} && {prefix} {quote(runner_path)} -r {quote(_PHP_BOOT + code)}"


# Prints one "OPSKIT-WP {json}" line about a plugin; the plugin file comes from $OPSKIT_PLUGIN.
PLUGIN_STATE_PHP = r"""
$f = getenv('OPSKIT_PLUGIN');
$ap = (array) get_option('active_plugins', array());
$ms = function_exists('is_multisite') && is_multisite();
$net = $ms ? array_keys((array) get_site_option('active_sitewide_plugins', array())) : array();
$opt = get_option(getenv('OPSKIT_OPTION'));
echo "\nOPSKIT-PLUGIN-DIR " . WP_PLUGIN_DIR . "\n";
echo "\nOPSKIT-WP " . json_encode(array(
  'plugin_dir' => WP_PLUGIN_DIR, 'content_dir' => WP_CONTENT_DIR, 'multisite' => $ms,
  'active' => in_array($f, $ap, true), 'network_active' => in_array($f, $net, true),
  'cdn_hostname' => (is_array($opt) && isset($opt['cdn_hostname'])) ? $opt['cdn_hostname'] : null,
  'wp_version' => get_bloginfo('version'),
), JSON_UNESCAPED_SLASHES) . "\n";
"""

# Re-activates $OPSKIT_PLUGIN if WordPress dropped it (network-wide when $OPSKIT_NETWORK=1).
# silent=true: the plugin was active before, so its activation hooks must not run again.
REACTIVATE_PHP = r"""
require_once ABSPATH . 'wp-admin/includes/plugin.php';
$f = getenv('OPSKIT_PLUGIN'); $net = getenv('OPSKIT_NETWORK') === '1';
if (!file_exists(WP_PLUGIN_DIR . '/' . $f)) { echo "\nOPSKIT-ACT missing\n"; return; }
$ap = (array) get_option('active_plugins', array());
$on = $net ? is_plugin_active_for_network($f) : in_array($f, $ap, true);
if ($on) { echo "\nOPSKIT-ACT already\n"; return; }
$r = activate_plugin($f, '', $net, true);
if (is_wp_error($r)) { echo "\nOPSKIT-ACT error " . $r->get_error_message() . "\n"; return; }
echo "\nOPSKIT-ACT activated\n";
"""


def parse_marker_json(output: str, marker: str = "OPSKIT-WP ") -> dict | None:
    """Pure: the JSON object on the last line starting with `marker`, or None."""
    for line in reversed(output.splitlines()):
        if line.startswith(marker):
            try:
                value = json.loads(line[len(marker):])
            except json.JSONDecodeError:
                return None
            return value if isinstance(value, dict) else None
    return None


def site_host(url: str | None) -> str | None:
    if not url:
        return None
    match = re.match(r"^https?://([^/:]+)", url)
    return match.group(1) if match else None
