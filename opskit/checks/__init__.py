"""Verifications: HTTP, paths, config tests."""
