import pytest

from pipeline.cli_extract import extraction_config
from pipeline.core.config_loading import apply_overrides, load_yaml_overrides
from pipeline.core.errors import UserError
from pipeline.extract_config import ExtractConfig


def test_overrides_change_only_what_they_name():
    cfg = apply_overrides(ExtractConfig(), {"run": {"batch_size": 3}, "sampling": {"semantic_reduce": "center"}})
    assert cfg.run.batch_size == 3 and cfg.sampling.semantic_reduce == "center"
    assert cfg.run.workers == ExtractConfig().run.workers


def test_unknown_key_is_an_error_naming_the_key():
    with pytest.raises(UserError, match="unknown config key 'batchsize'"):
        apply_overrides(ExtractConfig(), {"run": {"batchsize": 3}})
    with pytest.raises(UserError, match="unknown config key 'runs'"):
        apply_overrides(ExtractConfig(), {"runs": {}})


def test_wrong_type_is_an_error():
    with pytest.raises(UserError, match=r"config.run.batch_size: expected int"):
        apply_overrides(ExtractConfig(), {"run": {"batch_size": "eight"}})


def test_yaml_then_command_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("run:\n  batch_size: 4\n  workers: 1\nbackbones:\n  semantic: dinov3_tiny\n")
    cfg = extraction_config(path, {"batch_size": 16, "workers": None})
    assert (cfg.run.batch_size, cfg.run.workers, cfg.backbones.semantic) == (16, 1, "dinov3_tiny")


def test_bad_yaml_files(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_yaml_overrides(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(UserError, match="mapping"):
        load_yaml_overrides(tmp_path / "list.yaml")


def test_shipped_configs_load():
    from pathlib import Path

    from fusion.training.config import training_config

    folder = Path(__file__).parents[1] / "configs"
    configs = sorted(folder.glob("extract*.yaml"))
    assert configs, "configs/ should ship extraction presets"
    for path in [*configs, folder / "ssv2_vjepa2.yaml"]:
        extraction_config(path, {})
    recipe = extraction_config(folder / "ssv2_vjepa2.yaml", {})
    assert (recipe.backbones.motion, recipe.backbones.motion_layer, recipe.sampling.semantic_frames) == (
        "vjepa2_vitl", "last_hidden_state", 8)  # fmt: skip
    probe = training_config("default", folder / "probe_vjepa2.yaml", {})
    assert (probe.model.probe_blocks, probe.model.heads) == (3, 16)


def test_a_stored_config_takes_the_defaults_of_settings_added_since():
    from pipeline.core.config_loading import with_defaults

    defaults = {"lr": 0.1, "data": {"batch": 8, "order": None}}
    assert with_defaults({"lr": 0.3, "data": {"batch": 4}}, defaults) == {
        "lr": 0.3,
        "data": {"batch": 4, "order": None},
    }
    assert with_defaults({"lr": 0.3, "data": 5}, defaults) == {"lr": 0.3, "data": 5}  # stored values are kept


def test_a_config_from_a_pipe_is_read_and_missing_paths_say_they_do_not_exist(tmp_path):
    """`--config <(...)` hands over /dev/fd/N, a pipe, not a regular file."""
    import os
    import threading

    from pipeline.cache.layout import open_cache

    read, write = os.pipe()
    writer = threading.Thread(target=lambda: (os.write(write, b"run:\n  batch_size: 3\n"), os.close(write)))
    writer.start()
    try:
        assert load_yaml_overrides(f"/dev/fd/{read}") == {"run": {"batch_size": 3}}
    finally:
        writer.join()
        os.close(read)
    with pytest.raises(UserError, match=f"config file {tmp_path / 'nope.yaml'} does not exist"):
        load_yaml_overrides(tmp_path / "nope.yaml")
    with pytest.raises(UserError, match="is a folder, expected a YAML file"):
        load_yaml_overrides(tmp_path)
    with pytest.raises(UserError, match=f"cache {tmp_path / 'nope'} does not exist"):
        open_cache(tmp_path / "nope")
