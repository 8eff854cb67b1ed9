<?php
/**
 * Plugin Name: CDN Enabler (opskit test double)
 * Description: A small stand-in for KeyCDN's CDN Enabler, written for opskit's lab. When active it rewrites the site's asset URLs (wp-content, wp-includes) to a CDN hostname, the way the real plugin does, so that whether it is loaded can be seen in the page.
 * Version: 2.0.6-opskit
 * Author: opskit
 * License: GPLv2 or later
 * Text Domain: cdn-enabler
 * Requires at least: 5.1
 * Requires PHP: 7.0
 */

// Like the real plugin: never run outside WordPress.
if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

define( 'CDN_ENABLER_VERSION', '2.0.6-opskit' );
define( 'CDN_ENABLER_FILE', __FILE__ );

/**
 * Settings live in the option `cdn_enabler`, as in the real plugin:
 *   cdn_hostname             the CDN host the URLs are rewritten to
 *   included_file_extensions not used by the double (everything under the
 *                            included directories is rewritten)
 */
function cdn_enabler_default_settings() {
	return array(
		'cdn_hostname'             => '',
		'included_file_extensions' => ".css\n.gif\n.jpeg\n.jpg\n.js\n.mp3\n.mp4\n.pdf\n.png\n.svg\n.webp\n.woff2",
		'excluded_strings'         => '',
	);
}

function cdn_enabler_settings() {
	$settings = get_option( 'cdn_enabler', array() );
	if ( ! is_array( $settings ) ) {
		$settings = array();
	}
	return array_merge( cdn_enabler_default_settings(), $settings );
}

function cdn_enabler_activate() {
	if ( false === get_option( 'cdn_enabler' ) ) {
		add_option( 'cdn_enabler', cdn_enabler_default_settings() );
	}
}
register_activation_hook( __FILE__, 'cdn_enabler_activate' );

/**
 * Rewrites absolute, protocol-relative and JSON-escaped URLs of the site's own
 * host that point into wp-content/ or wp-includes/ so that they point to the
 * CDN host instead.
 */
function cdn_enabler_rewrite( $html ) {
	$settings = cdn_enabler_settings();
	$cdn_host = trim( (string) $settings['cdn_hostname'] );
	if ( '' === $cdn_host || ! is_string( $html ) || '' === $html ) {
		return $html;
	}
	$site_host = wp_parse_url( home_url(), PHP_URL_HOST );
	if ( ! $site_host ) {
		return $html;
	}
	$host_re = preg_quote( $site_host, '#' );
	// Optional scheme, "//" (or "\/\/" inside JSON), the site host with an optional port,
	// then "/wp-content/" or "/wp-includes/" (possibly JSON-escaped).
	$pattern = '#(?:https?:)?(\\\\?/\\\\?/)' . $host_re . '(?::\d+)?(\\\\?/)(wp-content|wp-includes)(\\\\?/)#i';

	return preg_replace_callback(
		$pattern,
		function ( $m ) use ( $cdn_host ) {
			return 'https:' . $m[1] . $cdn_host . $m[2] . $m[3] . $m[4];
		},
		$html
	);
}

function cdn_enabler_start_buffering() {
	if ( is_admin() || wp_doing_ajax() || wp_doing_cron() || ( defined( 'REST_REQUEST' ) && REST_REQUEST ) ) {
		return;
	}
	ob_start( 'cdn_enabler_rewrite' );
}
add_action( 'template_redirect', 'cdn_enabler_start_buffering', 0 );
