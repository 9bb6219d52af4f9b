"""``python -m fmtlbench`` is the ``fmtlbench`` command."""

from fmtlbench.cli import main

main()
