"""opskit: diagnose and fix 502s on fleets of WordPress hosts, with automatic rollback."""

__version__ = "0.1.0"
