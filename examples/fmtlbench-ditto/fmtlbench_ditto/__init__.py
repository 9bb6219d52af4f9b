"""Ditto for fmtlbench, as a third-party plugin package."""
