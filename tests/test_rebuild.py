"""fusion/models/rebuild.py: a stored model comes back as it was trained, in evaluation, prediction and reports."""

import dataclasses

import pytest
import torch

from fusion.models.config import FusionConfig
from fusion.models.rebuild import as_trained, rebuild_model
from fusion.models.registry import build_model
from fusion.prediction.complete_model import package_from_checkpoint
from pipeline.core.errors import UserError

SHAPES = {"semantic": [16, 32], "motion": [4, 16]}
LABELS = {"label": 5}


def _names(model: torch.nn.Module) -> set[str]:
    return set(model.state_dict())


def test_a_config_stored_before_position_embeddings_rebuilds_a_model_without_them():
    old = dataclasses.asdict(FusionConfig())
    del old["positions"]  # as checkpoints written before the field existed hold it
    with_positions = build_model("gasm_cast", 32, 16, LABELS, FusionConfig(positions=True))
    rebuilt = rebuild_model("gasm_cast", old, SHAPES, LABELS)
    assert any("position" in n for n in _names(with_positions))
    assert not any("position" in n for n in _names(rebuilt))
    assert _names(rebuild_model("gasm_cast", {**old, "positions": True}, SHAPES, LABELS)) == _names(with_positions)


def test_weights_are_loaded_and_weights_of_another_model_are_refused_in_one_line():
    torch.manual_seed(0)
    trained = build_model("late_fusion", 32, 16, LABELS)
    cfg = dataclasses.asdict(FusionConfig())
    rebuilt = rebuild_model("late_fusion", cfg, SHAPES, LABELS, trained.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(trained.state_dict().values(), rebuilt.state_dict().values()))
    with pytest.raises(UserError, match="do not fit model gasm_cast") as caught:
        rebuild_model("gasm_cast", cfg, SHAPES, LABELS, trained.state_dict())
    assert "\n" not in str(caught.value)


def test_an_exported_package_keeps_what_an_old_config_meant():
    state = {"model_name": "late_fusion", "config": {"model": {"dropout": 0.2}}, "model": {}, "spec": {},
             "cache": {"backbones": {"semantic": {"name": "dinov3_tiny"}, "motion": {"name": "i3d_tiny"}}}}  # fmt: skip
    package = package_from_checkpoint(state)
    assert package["fusion_config"] == as_trained({"dropout": 0.2}) == {"positions": False, "dropout": 0.2}
