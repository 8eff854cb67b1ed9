"""Pure knowledge of the software on a host: how nginx, php-fpm, PHP and WordPress
read their configuration and what their output means.

No step classes, no network, no clock, no host access: every function here takes
text (a capture of `nginx -T`, the bytes of a php-fpm pool file, ...) and returns
values or new text. Probes and changes are thin adapters over these modules, so
all of it is tested on real captures without SSH.

    from opskit.stack import nginx
    config = nginx.parse_dump(dump_text)
    nginx.effective(config, "example.com", "/", "fastcgi_read_timeout").value   # '300s'
"""
