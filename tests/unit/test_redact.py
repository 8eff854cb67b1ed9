"""Secrets masked in diffs and config text (opskit/redact.py): only the value, every line."""

from __future__ import annotations

import difflib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from opskit.redact import mask_secrets

# (text, masked): one line each, as they appear in wp-config.php, php-fpm pools, .env, YAML,
# nginx and Apache files.
CASES = [
    # WordPress's define()s, in the spacing wp-config-sample.php uses and others
    ("define( 'DB_PASSWORD', 'password_here' );", "define( 'DB_PASSWORD', '***' );"),
    ('define("DB_PASSWORD","p4ss");', 'define("DB_PASSWORD","***");'),
    ("define('DB_PASSWORD', 'it\\'s \"quoted\"');", "define('DB_PASSWORD', '***');"),
    ("define( 'AUTH_KEY',         'x$0|k&Z(8]3A~Q0@)Q:|^_ 5}' );", "define( 'AUTH_KEY',         '***' );"),
    ("define( 'SECURE_AUTH_KEY',  'a\\\\b' );", "define( 'SECURE_AUTH_KEY',  '***' );"),
    ("define( 'LOGGED_IN_KEY',    '1' );", "define( 'LOGGED_IN_KEY',    '***' );"),
    ("define( 'NONCE_KEY',        'n' );", "define( 'NONCE_KEY',        '***' );"),
    ("define( 'AUTH_SALT',        's' );", "define( 'AUTH_SALT',        '***' );"),
    ("define( 'NONCE_SALT', 's' ); define( 'WP_CACHE_KEY_SALT', 'c' );",
     "define( 'NONCE_SALT', '***' ); define( 'WP_CACHE_KEY_SALT', '***' );"),
    ("DEFINE('wp_redis_password', 'r');", "DEFINE('wp_redis_password', '***');"),
    ("define('DB_PASSWORD', getenv('DB_PASSWORD') ?: 'fallback');",
     "define('DB_PASSWORD', getenv('DB_PASSWORD') ?: '***');"),
    ("define( 'DB_PASSWORD', '' );", "define( 'DB_PASSWORD', '' );"),
    ("// define( 'DB_PASSWORD', 'old' );", "// define( 'DB_PASSWORD', '***' );"),
    # PHP variables and arrays
    ("$db_password = 'secret';", "$db_password = '***';"),
    ('$config["smtp_password"] = "x\\"y";', '$config["smtp_password"] = "***";'),
    ("    'password' => 'p', 'user' => 'u',", "    'password' => '***', 'user' => 'u',"),
    ("array('host' => 'h', 'api_key' => \"k\")", "array('host' => 'h', 'api_key' => \"***\")"),
    # php-fpm pool env[...] and ini values
    ("env[DB_PASSWORD] = hunter2", "env[DB_PASSWORD] = ***"),
    ('env[DB_PASSWORD] = "two words"', 'env[DB_PASSWORD] = "***"'),
    ("php_admin_value[mysql.default_password] = pw", "php_admin_value[mysql.default_password] = ***"),
    (";env[OLD_TOKEN] = abc", ";env[OLD_TOKEN] = ***"),
    # .env and shell
    ("DB_PASSWORD=p@ss word", "DB_PASSWORD=***"),
    ("DB_PASSWORD='p#ss' # rotated", "DB_PASSWORD='***' # rotated"),
    ('export MAILGUN_API_KEY="key-3ax6xnjp29"', 'export MAILGUN_API_KEY="***"'),
    ('GITHUB_TOKEN="abc"def', "GITHUB_TOKEN=***"),          # not one clean literal: all of it
    ('JWT_SECRET="unterminated', 'JWT_SECRET="***'),
    ("REDIS_PASSWORD=", "REDIS_PASSWORD="),
    ("# DB_PASSWORD=old", "# DB_PASSWORD=***"),
    # YAML and JSON
    ("  password: 'it''s'", "  password: '***'"),
    ('  - token: "t" # ci', '  - token: "***" # ci'),
    ("api-key: k", "api-key: ***"),
    ('{"user": "u", "password": "p\\"q", "n": 1}', '{"user": "u", "password": "***", "n": 1}'),
    ('    "client_secret": "cs",', '    "client_secret": "***",'),
    # nginx and Apache
    ("    fastcgi_param DB_PASSWORD s3cret;", "    fastcgi_param DB_PASSWORD ***;"),
    ('SetEnv STRIPE_SECRET "sk_live"', 'SetEnv STRIPE_SECRET "***"'),
    ("php_admin_value mysql.default_password pw", "php_admin_value mysql.default_password ***"),
    # line endings stay
    ("DB_PASSWORD=abc\r", "DB_PASSWORD=***\r"),
    ('password: "x"\r', 'password: "***"\r'),
]

# Lines that look like the above and hold no secret: they come back byte for byte.
NOT_SECRETS = [
    "define( 'DB_NAME', 'wordpress' );",
    "define( 'DB_USER', 'site1' );",
    "define( 'DB_HOST', 'localhost' );",
    "define( 'WP_DEBUG', false );",
    "$table_prefix = 'wp_';",
    "if ( $password == 'x' ) {",
    "pm.max_children = 5",
    "request_terminate_timeout = 30s",
    "env[WP_ENV] = production",
    "fastcgi_read_timeout 300;",
    "APP_URL=https://site1.example.com/?a=b",
    "DB_HOST=127.0.0.1:3306",
    "  user: deploy",
    "--- a/wp-config.php\t2024-05-01 10:00:00",
    "+++ b/wp-config.php",
    "@@ -20,7 +20,7 @@",
    "Forgot your password? Ask the admin.",
    "\\ No newline at end of file",
    "",
]


@pytest.mark.parametrize(("text", "masked"), CASES, ids=[c[0][:40] for c in CASES])
def test_masks_only_the_value(text, masked):
    assert mask_secrets(text) == masked


@pytest.mark.parametrize(("text", "masked"), CASES, ids=[c[0][:40] for c in CASES])
@pytest.mark.parametrize("column", ["-", "+", " "])
def test_masks_diff_lines_too(text, masked, column):
    assert mask_secrets(column + text) == column + masked


@pytest.mark.parametrize("text", NOT_SECRETS)
def test_lines_without_secrets_are_byte_identical(text):
    assert mask_secrets(text) == text
    assert mask_secrets("-" + text + "\r\n") == "-" + text + "\r\n"


@pytest.mark.parametrize(("text", "masked"), CASES, ids=[c[0][:40] for c in CASES])
def test_masking_twice_changes_nothing_more(text, masked):
    assert mask_secrets(masked) == masked


def test_extra_names_from_the_inventory():
    text = ("STRIPE_LIVE_SK=sk_live_1\nSTRIPE_LIVE_SK_ID=id_1\nenv[stripe_live_sk] = sk_2\n"
            "define( 'MY_LICENSE', 'L-123' );\n$settings['License'] = 'L-456';\nLICENSE=MIT\n")
    assert mask_secrets(text) == text, "the names alone are no secret"
    assert mask_secrets(text, ["STRIPE_LIVE_SK", "my_license", "license"]) == (
        "STRIPE_LIVE_SK=***\nSTRIPE_LIVE_SK_ID=id_1\nenv[stripe_live_sk] = ***\n"
        "define( 'MY_LICENSE', '***' );\n$settings['License'] = '***';\nLICENSE=***\n")
    assert mask_secrets(text, iter(["STRIPE_LIVE_SK"])) == mask_secrets(text, ["STRIPE_LIVE_SK"])
    assert mask_secrets(text, [""]) == text


def test_a_hunk_headers_function_context_is_masked():
    assert mask_secrets("@@ -1,3 +1,3 @@ define( 'DB_PASSWORD', 'x' );") == "@@ -1,3 +1,3 @@ define( 'DB_PASSWORD', '***' );"
    assert mask_secrets("@@ -4 +4 @@ password = x") == "@@ -4 +4 @@ password = ***"


WP_CONFIG = """<?php
/**
 * The base configuration for WordPress
 *
 * @package WordPress
 */

// ** Database settings - You can get this info from your web host ** //
/** The name of the database for WordPress */
define( 'DB_NAME', 'site1_wp' );

/** Database username */
define( 'DB_USER', 'site1' );

/** Database password */
define( 'DB_PASSWORD', '{db_password}' );

/** Database hostname */
define( 'DB_HOST', 'localhost' );

/** Database charset to use in creating database tables. */
define( 'DB_CHARSET', 'utf8mb4' );

/**#@+
 * Authentication unique keys and salts.
 */
define( 'AUTH_KEY',         '{auth_key}' );
define( 'SECURE_AUTH_KEY',  'Xv2#k!Lr|w@S8&Zp' );
define( 'LOGGED_IN_KEY',    'q7[M]Hf)c%E`nB:T' );
define( 'NONCE_KEY',        '{nonce_key}' );
define( 'AUTH_SALT',        '{auth_salt}' );
define( 'SECURE_AUTH_SALT', 'y\\'D~e*3 ^G;rO<1' );
define( 'LOGGED_IN_SALT',   'F0}}{{k=U+z-$W>i' );
define( 'NONCE_SALT',       'b?J"9_lQ,5mtv8.A' );
/**#@-*/

$table_prefix = 'wp_';

define( 'WP_DEBUG', {debug} );
define( 'WP_REDIS_PASSWORD', '{redis}' );

/* That's all, stop editing! Happy publishing. */
if ( ! defined( 'ABSPATH' ) ) {{
\tdefine( 'ABSPATH', __DIR__ . '/' );
}}
require_once ABSPATH . 'wp-settings.php';
"""

OLD = dict(db_password="0ld-Pa$$w0rd", auth_key="k1 ]|ZxN:!o^%S)#", nonce_key="n1_8\\'x", auth_salt="@@ -1 +1 @@",
           debug="false", redis="r3d1s")
NEW = dict(db_password="n3w\\'Pass \"w0rd\"", auth_key="k2 ]|ZxN:!o^%S)#", nonce_key="n2=\\\\", auth_salt="a2;s",
           debug="true", redis="")
SECRET_DEFINES = {"DB_PASSWORD", "AUTH_KEY", "SECURE_AUTH_KEY", "LOGGED_IN_KEY", "NONCE_KEY", "AUTH_SALT",
                  "SECURE_AUTH_SALT", "LOGGED_IN_SALT", "NONCE_SALT", "WP_REDIS_PASSWORD"}


def test_a_wp_config_diff_keeps_its_shape_and_loses_its_secrets():
    old, new = WP_CONFIG.format(**OLD), WP_CONFIG.format(**NEW)
    diff = "".join(difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                        "a/wp-config.php", "b/wp-config.php", n=2))
    masked = mask_secrets(diff)
    before, after = diff.split("\n"), masked.split("\n")
    assert len(before) == len(after)
    masked_lines = 0
    for b, a in zip(before, after):
        secret = re.fullmatch(r"[-+ ]define\( '(\w+)',\s*'(.+)' \);", b)
        if secret and secret[1] in SECRET_DEFINES:
            # only the value goes: name, spacing, quotes and the -/+/context column stay
            assert a == b[:secret.start(2)] + "***" + b[secret.end(2):], (b, a)
            masked_lines += 1
        else:
            assert a == b, "a line without a secret is byte-identical"
    assert masked_lines >= 9   # DB_PASSWORD, AUTH_KEY, NONCE_KEY, AUTH_SALT as -/+ pairs; context keys
    assert "-define( 'WP_DEBUG', false );" in after and "+define( 'WP_DEBUG', true );" in after
    assert "-define( 'WP_REDIS_PASSWORD', '***' );" in after
    assert "+define( 'WP_REDIS_PASSWORD', '' );" in after, "an emptied secret shows as empty"
    for value in [*OLD.values(), *NEW.values(), "Xv2#k!Lr|w@S8&Zp", "q7[M]Hf)c%E`nB:T", "y\\'D~e*3 ^G;rO<1"]:
        if value not in ("", "true", "false"):
            assert value not in masked, value
    # the whole files: each secret define once, nothing else touched
    assert mask_secrets(old).count("'***'") == 10
    assert mask_secrets(new).count("'***'") == 9   # the emptied WP_REDIS_PASSWORD stays ''
    assert [line for line in mask_secrets(old).split("\n") if "***" not in line] == \
           [line for line in old.split("\n") if not re.search(r"define\( '(%s)'" % "|".join(SECRET_DEFINES), line)]


def test_a_php_fpm_pool_and_an_env_file():
    pool = ("[site1]\nuser = site1\nlisten = /run/php/php8.2-fpm-site1.sock\npm = dynamic\npm.max_children = 5\n"
            "request_terminate_timeout = 30s\nenv[DB_HOST] = localhost\nenv[DB_PASSWORD] = \"s3 cr;et\"\n"
            "env[STRIPE_KEY] = sk_live_9\nphp_admin_value[error_log] = /home/site1/logs/php.log\n"
            "php_admin_value[mysqli.default_pw] = hunter2\n")
    assert mask_secrets(pool, ["STRIPE_KEY", "mysqli.default_pw"]) == pool.replace(
        '"s3 cr;et"', '"***"').replace("sk_live_9", "***").replace("hunter2", "***")
    env = ("APP_ENV=production\r\nDB_HOST=127.0.0.1\r\nDB_PASSWORD='p#ss w0rd'\r\n"
           "export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG\r\nSESSION_TOKEN=a\\\"b\r\n")
    assert mask_secrets(env) == ("APP_ENV=production\r\nDB_HOST=127.0.0.1\r\nDB_PASSWORD='***'\r\n"
                                 "export AWS_SECRET_ACCESS_KEY=***\r\nSESSION_TOKEN=***\r\n")


# Text without any word that names a secret (and without WordPress's _KEY/_SALT names)
PLAIN = st.text(st.sampled_from(list("abcdefgxyz_ =:'\"\\;#$[]()\n\r\t-+@.,>")), max_size=120)


@given(PLAIN)
def test_text_naming_no_secret_comes_back_unchanged(text):
    assert mask_secrets(text) == text


def test_the_inventory_names_more_secrets(tmp_path):
    from opskit import inventory
    from opskit.errors import InventoryError

    path = tmp_path / "inventory.yaml"
    path.write_text("defaults: {secret_names: [LICENSE_KEY]}\n"
                    "hosts:\n  a: {address: 192.0.2.1}\n  b: {address: 192.0.2.2, secret_names: [STRIPE_SECRET_ID, SMTP_PASS]}\n"
                    "  c: {address: 192.0.2.3, secret_names: []}\n")
    hosts = inventory.load(path).hosts
    assert hosts["a"].secret_names == ["LICENSE_KEY"]
    assert hosts["b"].secret_names == ["STRIPE_SECRET_ID", "SMTP_PASS"], "a host's own list replaces the default"
    assert hosts["c"].secret_names == []
    text = "+LICENSE_KEY=L-1\n+SMTP_PASS=p\n"
    assert mask_secrets(text, hosts["a"].secret_names) == "+LICENSE_KEY=***\n+SMTP_PASS=p\n"
    assert mask_secrets(text, hosts["b"].secret_names) == "+LICENSE_KEY=L-1\n+SMTP_PASS=***\n"
    path.write_text("hosts:\n  a:\n    address: 192.0.2.1\n    secret_names: LICENSE_KEY\n")
    with pytest.raises(InventoryError, match=r"inventory.yaml:4: hosts\.a\.secret_names"):
        inventory.load(path)
