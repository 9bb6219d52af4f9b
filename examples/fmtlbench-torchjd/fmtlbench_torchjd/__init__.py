"""Server-side aggregators from torchjd as fmtlbench algorithms."""
