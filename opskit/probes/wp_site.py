"""The WordPress plugins that sit between a visitor and PHP: CDN Enabler and page caches (read-only).

    {"root": "/home/site1/public_html", "plugins": ["akismet", "cdn-enabler", "wp-super-cache"],
     "cdn_plugins": ["cdn-enabler"], "page_cache": ["wp-super-cache"], "advanced_cache": True,
     "wp_cache": "true", "renamed_by_opskit": []}

From the plugins folder's listing, wp-content/advanced-cache.php (a page cache's drop-in) and
wp-config.php's WP_CACHE define. Only folders are listed (no PHP runs): whether CDN Enabler is
active is disable-cdn's business (its wp_plugin probe loads WordPress). None when WordPress's
root is unknown.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict

from opskit.shell import quote
from opskit.steps import Context, Probe, register

CDN_PLUGINS = ("cdn-enabler", "wp-cdn-rewrite", "ossdl-cdn-off-linker", "bunnycdn", "keycdn", "wp-cloudflare-page-cache")
PAGE_CACHES = ("wp-rocket", "w3-total-cache", "wp-super-cache", "litespeed-cache", "wp-fastest-cache", "cache-enabler",
               "breeze", "sg-cachepress", "comet-cache", "hummingbird-performance", "wp-optimize", "nginx-helper",
               "swift-performance-lite", "wp-cloudflare-page-cache", "cachify", "powered-cache")


class WpSiteParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    root: str | None = None       # WordPress's root (the wordpress probe's root)


@register
class WpSite(Probe):
    name = "wp_site"
    Params = WpSiteParams

    def script(self, params: WpSiteParams, ctx: Context) -> str:
        if not params.root:
            return "true"
        q = quote(ctx.path(params.root))
        return (f"r={q}\nprintf 'root=%s\\n' \"$r\"\n"
                "for d in \"$r\"/wp-content/plugins/* \"$r\"/wp-content/plugins/.*.opskit-*; do "
                "[ -d \"$d\" ] && printf 'plugin=%s\\n' \"${d##*/}\"; done\n"
                "[ -f \"$r/wp-content/advanced-cache.php\" ] && echo advanced_cache=1\n"
                "for c in \"$r/wp-config.php\" \"$r/../wp-config.php\"; do [ -r \"$c\" ] && "
                "sed -n \"s/^[[:space:]]*define( *['\\\"]WP_CACHE['\\\"] *, *\\([A-Za-z0-9]*\\).*/wp_cache=\\1/p\" \"$c\" && break; done\n"
                "true")

    def parse(self, output: str, exit_status: int, params: WpSiteParams) -> dict[str, Any] | None:
        if not params.root:
            return None
        lines = output.splitlines()
        names = [line[7:] for line in lines if line.startswith("plugin=")]
        plugins = sorted(n for n in names if not n.startswith("."))
        renamed = sorted(m.group(1) for n in names if (m := re.match(r"^\.[^.]+\.opskit-(.+)$", n)))
        wp_cache = next((line[9:] for line in lines if line.startswith("wp_cache=")), None)
        root = next((line[5:] for line in lines if line.startswith("root=")), params.root)
        return {"root": root, "plugins": plugins, "cdn_plugins": [p for p in plugins if p in CDN_PLUGINS],
                "page_cache": [p for p in plugins if p in PAGE_CACHES],
                "advanced_cache": "advanced_cache=1" in lines, "wp_cache": wp_cache, "renamed_by_opskit": renamed}
