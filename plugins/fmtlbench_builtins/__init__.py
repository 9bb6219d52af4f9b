"""The built-in fmtlbench components, registered through the `fmtlbench` entry-point group."""
