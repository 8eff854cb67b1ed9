"""Mutating steps that know their own undo."""
