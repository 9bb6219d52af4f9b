"""The leaderboard's figures: critical-difference diagram, p-value heatmap, Δ% curves.

Figures are built with matplotlib's object API (``Figure`` rendered by Agg), never through
pyplot's global state, so drawing works headless and cannot disturb a caller's own plots.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from fmtlbench.leaderboard.stats import Friedman


def nemenyi_cd(methods: int, blocks: int, alpha: float) -> float:
    """Nemenyi critical difference of mean ranks: q_alpha * sqrt(k (k + 1) / (6 N)), with
    q_alpha the studentized range quantile over sqrt(2) (Demšar 2006)."""
    from scipy.stats import studentized_range

    q = studentized_range.ppf(1 - alpha, methods, np.inf) / math.sqrt(2)
    return float(q * math.sqrt(methods * (methods + 1) / (6 * blocks)))


def cd_diagram(friedman: Friedman, blocks: int, alpha: float, title: str, unit: str) -> Figure:
    """Mean ranks on an axis (1 = best); methods the Nemenyi test cannot tell apart at
    ``alpha`` are joined by a bar."""
    from scikit_posthocs import critical_difference_diagram

    methods = len(friedman.mean_ranks)
    cd = nemenyi_cd(methods, blocks, alpha)
    fig = Figure(figsize=(8, 1.6 + 0.35 * methods))
    ax = fig.add_axes((0.05, 0.12, 0.9, 0.6))
    critical_difference_diagram(friedman.mean_ranks, friedman.nemenyi, ax=ax, alpha=alpha)
    fig.suptitle(
        f"{title}\nFriedman χ²={friedman.statistic:.3g}, p={friedman.pvalue:.3g}; "
        f"Nemenyi CD={cd:.3g} at α={alpha}",
        fontsize=9,
    )
    fig.text(0.5, 0.02, unit, ha="center", fontsize=7, wrap=True)
    return fig


def pvalue_heatmap(pvalues: pd.DataFrame, title: str, unit: str, alpha: float) -> Figure:
    """Bonferroni-adjusted Wilcoxon p-values, one cell per pair; cells below ``alpha`` are
    marked with a star (the diagonal, a method against itself, shows a dash)."""
    methods = list(pvalues.columns)
    size = 2.5 + 0.7 * len(methods)
    fig = Figure(figsize=(size + 1.2, size))
    ax = fig.add_axes((0.22, 0.22, 0.6, 0.66))
    image = ax.imshow(pvalues.to_numpy(dtype=float), vmin=0.0, vmax=1.0, cmap="viridis_r")
    ax.set_xticks(range(len(methods)), methods, rotation=45, ha="right")
    ax.set_yticks(range(len(methods)), methods)
    for i in range(len(methods)):
        for j in range(len(methods)):
            p = float(pvalues.iat[i, j])
            text = "–" if i == j else f"{p:.2g}" + ("*" if p < alpha else "")
            color = "black" if p < 0.5 else "white"
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color=color)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="adjusted p")
    ax.set_title(title, fontsize=9)
    fig.text(0.5, 0.02, unit, ha="center", fontsize=7, wrap=True)
    return fig


def delta_curves(
    curves: Mapping[str, Sequence[Mapping[int, float]]],
    targets: Sequence[float],
    title: str,
) -> Figure:
    """Δ% against round for every method: the mean over its seeds (rounds all seeds
    evaluated), with the seeds' range shaded; dashed lines mark the targets."""
    fig = Figure(figsize=(7, 4.2))
    ax = fig.add_subplot()
    for method, runs in curves.items():
        runs = [run for run in runs if run]
        if not runs:
            continue
        rounds = sorted(set(runs[0]).intersection(*runs[1:]))
        values = np.array([[run[r] for r in rounds] for run in runs])
        (line,) = ax.plot(rounds, values.mean(axis=0), marker="o", markersize=3, label=method)
        if len(runs) > 1:
            ax.fill_between(
                rounds, values.min(axis=0), values.max(axis=0), color=line.get_color(), alpha=0.2
            )
    for target in targets:
        ax.axhline(target, linestyle="--", color="grey", linewidth=0.8)
        ax.annotate(f"{target:g}%", (1.0, target), xycoords=("axes fraction", "data"), fontsize=7)
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("round")
    ax.set_ylabel("Δ% vs reference")
    ax.set_title(title, fontsize=9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    return fig


def save(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as a PNG (150 dpi) and return the path."""
    fig.savefig(path, dpi=150, bbox_inches="tight")
    return path
