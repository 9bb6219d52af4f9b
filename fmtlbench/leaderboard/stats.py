"""Rank statistics across methods (SPEC section 6), on a blocks x methods matrix.

Rows are the paired units ("blocks", by default one per seed x client x task metric), columns
the methods. ``orient`` makes every row higher-is-better and unit-free; the tests then are the
standard ones, called, not re-implemented: Friedman (scipy) with the Nemenyi post-hoc
(scikit-posthocs), and pairwise two-sided Wilcoxon signed-rank tests (scipy) with a Bonferroni
correction over all pairs, capped at 1.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd

from fmtlbench.errors import FmtlbenchError

ORIENTATION = (
    "values oriented so that higher is better (lower-is-better metrics negated) and divided "
    "by the block's mean |value| over methods, so that Wilcoxon differences are relative and "
    "unit-free (Friedman ranks within a block are unaffected by this scaling)"
)


class NotEnoughData(FmtlbenchError):
    """A test cannot be computed from the matrix (too few methods or blocks)."""


@dataclass
class Friedman:
    """Friedman test, mean ranks (1 = best) and the Nemenyi p-value matrix."""

    statistic: float
    pvalue: float
    mean_ranks: pd.Series
    nemenyi: pd.DataFrame


def orient(matrix: pd.DataFrame, lower: pd.Series) -> pd.DataFrame:
    """Negate rows whose metric is lower-is-better, then divide each row by its mean
    absolute value (rows that are all zero are left unscaled)."""
    signed = matrix.mul(np.where(lower.reindex(matrix.index).astype(bool), -1.0, 1.0), axis=0)
    scale = signed.abs().mean(axis=1).replace(0.0, 1.0)
    return signed.div(scale, axis=0)


def _check(matrix: pd.DataFrame, methods: int, what: str) -> None:
    if matrix.shape[1] < methods:
        raise NotEnoughData(
            f"{what} needs at least {methods} methods, got {matrix.shape[1]} "
            f"({', '.join(map(str, matrix.columns))})"
        )
    if matrix.shape[0] < 2:
        raise NotEnoughData(f"{what} needs at least 2 paired blocks, got {matrix.shape[0]}")
    if matrix.isna().any().any():
        raise NotEnoughData(f"{what}: the matrix has missing values; drop incomplete blocks")


def mean_ranks(matrix: pd.DataFrame) -> pd.Series:
    """Mean rank of every method over the blocks; 1 = highest value, ties share ranks."""
    return matrix.rank(axis=1, ascending=False, method="average").mean(axis=0)


def friedman_nemenyi(matrix: pd.DataFrame) -> Friedman:
    """Friedman's chi-square test over the methods and the Nemenyi post-hoc p-values."""
    _check(matrix, 3, "the Friedman test")
    from scikit_posthocs import posthoc_nemenyi_friedman
    from scipy.stats import friedmanchisquare

    statistic, pvalue = friedmanchisquare(*(matrix[c].to_numpy() for c in matrix.columns))
    nemenyi = posthoc_nemenyi_friedman(matrix.to_numpy())
    nemenyi.index = nemenyi.columns = list(matrix.columns)
    return Friedman(float(statistic), float(pvalue), mean_ranks(matrix), nemenyi)


def wilcoxon_bonferroni(matrix: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(raw, Bonferroni-adjusted) p-values of two-sided Wilcoxon signed-rank tests for every
    pair of methods; adjusted = min(1, raw x number of pairs); the diagonal is 1.

    A pair whose differences are all zero has no evidence of a difference: p = 1 (scipy
    would divide by zero there).
    """
    _check(matrix, 2, "the Wilcoxon test")
    from scipy.stats import wilcoxon

    methods = list(matrix.columns)
    pairs = list(combinations(methods, 2))
    raw = pd.DataFrame(1.0, index=methods, columns=methods)
    for a, b in pairs:
        diff = matrix[a].to_numpy() - matrix[b].to_numpy()
        if not np.any(diff):
            p = 1.0
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                p = float(wilcoxon(matrix[a].to_numpy(), matrix[b].to_numpy()).pvalue)
        raw.loc[a, b] = raw.loc[b, a] = p
    adjusted = (raw * len(pairs)).clip(upper=1.0)
    for m in methods:
        adjusted.loc[m, m] = 1.0
    return raw, adjusted
