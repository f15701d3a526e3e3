"""The training cache's holdout: a fixed, class-stratified part of its usable clips, never trained on, that
chooses the best epoch and a sweep's configurations when data.select_on is holdout."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HOLDOUT_SEED = 0  # fixed, not the run's seed: every run and sweep member on a cache holds out the same clips


@dataclass(frozen=True)
class HoldoutPart:
    """Which side of the training cache's holdout a CacheData holds: the held-out clips, or the rest."""

    fraction: float
    held: bool


def stratified_holdout(rows: np.ndarray, labels: np.ndarray, fraction: float) -> np.ndarray:
    """round(fraction * n), and at least one, of each class's n usable rows (a class of one clip keeps it for
    training), drawn with a fixed seed, ascending: every class with two clips or more is in the holdout, so a
    rare class counts in the choice as it does in the validation numbers."""
    rng = np.random.default_rng(HOLDOUT_SEED)
    classes = labels[rows]
    held = []
    for value in np.unique(classes):
        members = rows[classes == value]
        take = max(1, int(round(fraction * len(members)))) if len(members) > 1 else 0
        held.append(rng.permutation(members)[:take])
    return np.sort(np.concatenate(held)) if held else rows[:0]
