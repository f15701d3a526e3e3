"""A clip's views in a multi-view cache (sampling.spatial_views x temporal_views, view-major along the token
axis): training reads one view per clip, evaluation reads them all and averages the class probabilities."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

SCORE_KEYS = ("logits", "verb", "noun")  # a model's class scores, the outputs averaged over views


def draw_views(clips: int, views: int, choice: str, generator: torch.Generator | None) -> np.ndarray | None:
    """The view each of a window's `clips` trains on (None: every view is kept, as evaluation reads them). A
    one-view cache draws nothing, so its batches and random state are what they were before views."""
    if choice == "all" or views == 1:
        return None
    if choice == "first":
        return np.zeros(clips, dtype=np.int64)
    return torch.randint(views, (clips,), generator=generator).numpy()


def gather_rows(features: Any, at: np.ndarray, views: int, picks: np.ndarray | None) -> Any:
    """Rows `at` of stored features [n, V * T, D] (numpy on the host, a tensor in device mode): [B, V * T, D]
    with every view, or [B, T, D] with view `picks[i]` of row i (one gather, no copy of other views)."""
    if isinstance(features, torch.Tensor):
        index = torch.from_numpy(at).to(features.device, non_blocking=True)
        if picks is None:
            return features.index_select(0, index)
        chosen = torch.from_numpy(picks).to(features.device, non_blocking=True)
        return features.unflatten(1, (views, -1))[index, chosen]
    if picks is None:
        return features[at]
    return features.reshape(features.shape[0], views, -1, features.shape[2])[at, picks]


def fold_views(x: torch.Tensor, views: int) -> torch.Tensor:
    """[B, V * T, D] -> [B * V, T, D]: every view of a clip one after another, each a sample to the model."""
    return x.unflatten(1, (views, -1)).flatten(0, 1) if views > 1 else x


def average_views(outputs: dict[str, Any], views: int) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A model's class scores (SCORE_KEYS of `outputs`) [B * V, C] -> (the log of their softmax averaged over each
    clip's views [B, C], the first view's scores [B, C]), float. The log keeps them scores: their softmax is the
    averaged probabilities, exactly. One view: the scores as they are, twice."""
    scores = {key: outputs[key].float() for key in SCORE_KEYS if key in outputs}
    if views == 1:
        return scores, scores
    grouped = {key: value.unflatten(0, (-1, views)) for key, value in scores.items()}
    # log(mean softmax) as a logsumexp of log-softmaxes: finite where a confident view's probabilities underflow
    averaged = {key: value.log_softmax(-1).logsumexp(dim=1) - math.log(views) for key, value in grouped.items()}
    return averaged, {key: value[:, 0] for key, value in grouped.items()}
