"""Sub-commands of ``fmtlbench`` that live in their own modules (loaded on first use).

Each module defines one click command or group and imports only click at module level.
"""
