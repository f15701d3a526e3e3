"""The one way a stored model comes back: from a checkpoint's or a model file's name, config, feature shapes and
label sizes, with every rule that keeps old files meaning what they meant when they were written."""

from __future__ import annotations

from typing import Any

from fusion.models.config import FusionConfig
from fusion.models.registry import FusionModel, build_model
from pipeline.core.config_loading import apply_overrides
from pipeline.core.errors import UserError


def as_trained(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored `config.model` with what its absences meant when it was written: configs from before position
    embeddings existed hold models without them (the field's default is now on), so an absent `positions` is off."""
    return {"positions": False, **stored}


def stored_fusion_config(stored: dict[str, Any], where: str) -> FusionConfig:
    return apply_overrides(FusionConfig(), as_trained(stored), where=where)


def rebuild_model(
    name: str,
    stored_config: dict[str, Any],
    shapes: dict[str, Any],
    label_sizes: dict[str, int],
    weights: dict[str, Any] | None = None,
    where: str = "the stored model config",
) -> FusionModel:
    """Model `name` as it was trained: `shapes` {"semantic": [N, D], "motion": [T, D]}; `weights` (a state dict)
    loaded when given, a file of another code version refused by the weights that do not fit."""
    cfg = stored_fusion_config(stored_config, where)
    model = build_model(name, shapes["semantic"][1], shapes["motion"][1], label_sizes, cfg)
    if weights is not None:
        try:
            model.load_state_dict(weights)
        except RuntimeError as exc:
            raise UserError(f"the checkpoint's weights do not fit model {name} of this version: "
                            f"{' '.join(str(exc).split())}") from None  # fmt: skip
    return model
