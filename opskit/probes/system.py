"""Basic host facts: OS, user, home, web stack presence, WordPress root."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from opskit.shell import quote
from opskit.stack.keyvalues import key_values
from opskit.steps import Context, Probe, register


@register
class System(Probe):
    """OS, kernel, user, home, cores and load.

    Example: {"os": "Debian GNU/Linux 12 (bookworm)", "kernel": "6.1.0", "user": "site1",
              "home": "/home/site1", "cores": 2, "load1": 0.12}
    Values that could not be read are None.
    """

    name = "system"

    def script(self, params, ctx: Context) -> str:
        return (
            "if [ -r /etc/os-release ]; then . /etc/os-release; echo \"os=$PRETTY_NAME\"; fi\n"
            "echo \"kernel=$(uname -r 2>/dev/null)\"\n"
            "echo \"user=$(id -un 2>/dev/null)\"\n"
            "printf 'home=%s\\n' \"$HOME\"\n"
            "echo \"cores=$(getconf _NPROCESSORS_ONLN 2>/dev/null || nproc 2>/dev/null)\"\n"
            "[ -r /proc/loadavg ] && echo \"loadavg=$(cat /proc/loadavg)\"\n"
            "true"
        )

    def parse(self, output: str, exit_status: int, params) -> dict[str, Any]:
        kv = key_values(output)
        load = kv.get("loadavg", "").split()
        return {
            "os": kv.get("os") or None,
            "kernel": kv.get("kernel") or None,
            "user": kv.get("user") or None,
            "home": kv.get("home") or None,
            "cores": int(kv["cores"]) if kv.get("cores", "").isdigit() else None,
            "load1": _float(load[0]) if load else None,
        }


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


class _Binary(Probe):
    """Presence and version of a program: {"present": bool, "path": str|None, "version": str|None}."""

    candidates: tuple[str, ...] = ()
    version_flag = "-v"

    def script(self, params, ctx: Context) -> str:
        names = " ".join(quote(c) for c in self.candidates)
        # PATH of a non-login shell often lacks /usr/sbin, where nginx and php-fpm live.
        return (
            "PATH=\"$PATH:/usr/sbin:/sbin:/usr/local/sbin\"\n"
            f"for b in {names}; do p=$(command -v \"$b\" 2>/dev/null) && {{ printf 'path=%s\\n' \"$p\"; "
            f"echo \"version=$(\"$p\" {self.version_flag} 2>&1 | head -n 1)\"; break; }}; done\n"
            "true"
        )

    def parse(self, output: str, exit_status: int, params) -> dict[str, Any]:
        kv = key_values(output)
        return {"present": "path" in kv, "path": kv.get("path"), "version": kv.get("version") or None}


@register
class Php(_Binary):
    name = "php"
    candidates = ("php", "php8.3", "php8.2", "php8.1", "php7.4")


@register
class Nginx(_Binary):
    name = "nginx"
    candidates = ("nginx",)


@register
class Apache(_Binary):
    name = "apache"
    candidates = ("apache2", "httpd")


class WordPressParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    root: str | None = None   # the inventory's wordpress.root; None → search the usual places


COMMON_ROOTS = ("~/public_html", "~/www", "~/htdocs", "~/httpdocs", "~/web", "~", "/var/www/html", "/var/www/wordpress", "/var/www")


@register
class WordPress(Probe):
    """Where WordPress lives: the first candidate directory holding wp-config.php (or one level up).

    Example: {"found": True, "root": "/home/site1/public_html", "config": "/home/site1/public_html/wp-config.php",
              "version": "6.1.1", "searched": [...]}
    found False means no candidate had wp-config.php; root is then None.
    """

    name = "wordpress"
    Params = WordPressParams

    def candidates(self, params: WordPressParams, ctx: Context) -> list[str]:
        return [ctx.path(params.root)] if params.root else [ctx.path(c) for c in COMMON_ROOTS]

    def script(self, params: WordPressParams, ctx: Context) -> str:
        lines = []
        for candidate in self.candidates(params, ctx):
            q = quote(candidate)
            # printf, not echo: dash's echo rewrites backslashes in paths
            lines.append(f"printf 'searched=%s\\n' {q}")
            # WordPress allows wp-config.php one directory above the root.
            lines.append(
                f"if [ -f {q}/wp-config.php ] || {{ [ -f {q}/wp-load.php ] && [ -f {q}/../wp-config.php ]; }}; then "
                f"printf 'root=%s\\n' {q}; "
                f"if [ -f {q}/wp-config.php ]; then printf 'config=%s/wp-config.php\\n' {q}; "
                f"else printf 'config=%s/wp-config.php\\n' \"$(cd {q}/.. && pwd)\"; fi; "
                f"sed -n \"s/^\\$wp_version *= *'\\([^']*\\)'.*/version=\\1/p\" {q}/wp-includes/version.php 2>/dev/null; "
                "exit 0; fi"
            )
        return "\n".join(lines) + "\ntrue"

    def parse(self, output: str, exit_status: int, params) -> dict[str, Any]:
        searched = [line[9:] for line in output.splitlines() if line.startswith("searched=")]
        kv = key_values(output)
        root = kv.get("root")
        return {"found": root is not None, "root": root, "config": kv.get("config"),
                "version": kv.get("version"), "searched": searched}
