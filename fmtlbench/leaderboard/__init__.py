"""The leaderboard: runs in, the study's tables, statistics and figures out.

Runs come from MLflow (``collect``) or from a CSV of published numbers (``published``) and
become ``Record`` objects (``records``). ``reference`` picks the Δ% reference of each run,
``curves`` computes Δ% per evaluated round, ``targets`` the rounds/bytes/time/energy needed to
reach a Δ% target, ``stats`` the Friedman/Nemenyi and Wilcoxon/Bonferroni tests, ``plots`` the
figures, ``tables`` the tables, ``board`` ties them together and ``report`` writes, prints and
logs the result. Everything here is imported by the ``leaderboard`` command only, never by
``fmtlbench.cli`` at start-up.
"""
