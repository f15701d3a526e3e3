"""The fusion model registry."""

from fusion.models.registry import MODELS, PARAMETER_BUDGET, FusionModel, build_model, count_trainable

__all__ = ["MODELS", "PARAMETER_BUDGET", "FusionModel", "build_model", "count_trainable"]
