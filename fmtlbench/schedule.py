"""Learning-rate schedule over rounds: linear warm-up, then cosine decay (SPEC section 4)."""

from __future__ import annotations

import math


def round_lr(base_lr: float, round: int, rounds: int, warmup: int) -> float:
    """Learning rate of 1-based ``round`` out of ``rounds``.

    Warm-up rounds ramp linearly up to ``base_lr`` (round 1 gets base_lr / (warmup + 1)...);
    afterwards a cosine decays from ``base_lr`` towards zero at the end of the last round.
    """
    if round <= warmup:
        return base_lr * round / (warmup + 1)
    span = max(1, rounds - warmup)
    progress = (round - warmup - 1) / span
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))
