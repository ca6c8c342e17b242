"""Named training recipes: one place a model is named, and nothing that can disagree with it."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import papermill as pm
import pytest
import yaml

from melanoma_utils import config
from melanoma_utils.cli.reproduce import check_params, check_preset, read_params
from melanoma_utils.models.presets import DEFAULT_PRESET, PRESETS, describe_presets
from melanoma_utils.models.train_config import TrainConfig


def test_every_preset_builds_and_the_default_preset_is_the_default_config() -> None:
    assert PRESETS[DEFAULT_PRESET].fields == {}
    assert TrainConfig.from_preset(DEFAULT_PRESET) == TrainConfig()
    lite1 = TrainConfig.from_preset("lite1-240", epochs=3)
    assert (lite1.backbone, lite1.image_size, lite1.backbone_weights, lite1.epochs) == ("efficientnetlite1", 240, "imagenet", 3)
    cnn = TrainConfig.from_preset("study-cnn")
    assert (cnn.backbone, cnn.image_size, cnn.learning_rate, cnn.batch_size) == (None, 128, 1e-4, 32)  # the paper's
    for name in PRESETS:
        cfg = TrainConfig.from_preset(name)
        assert set(cfg.preset_overrides(DEFAULT_PRESET)) <= set(PRESETS[name].fields) | {"image_size", "backbone_weights"}
        assert name in describe_presets()
    with pytest.raises(ValueError, match="known presets: lite0-224"):
        TrainConfig.from_preset("lite9")
    with pytest.raises(ValueError, match="unknown TrainConfig field.*epoch"):
        TrainConfig.from_preset("demo", epoch=3)


@pytest.mark.parametrize("params_file", sorted(p.name for p in config.PARAMS_DIR.glob("*.yaml")))
def test_parameter_files_name_a_preset_and_state_only_what_they_change(params_file: str) -> None:
    params = read_params(config.PARAMS_DIR / params_file)
    if params_file != "test.yaml":  # test.yaml is laid over demo.yaml, which names the preset
        assert "preset" in params, f"{params_file} names no preset"
    outside = set(params) & {f.name for f in fields(TrainConfig)} - {"seed", "n_boot"}  # every notebook takes these two
    assert not outside, f"{params_file}: TrainConfig field(s) {outside} outside train_overrides"
    check_preset(params, params_file)  # known preset; overrides valid and not restating it


def test_a_parameter_file_that_restates_or_contradicts_its_preset_is_refused(tmp_path: Path) -> None:
    for body, message in (({"preset": "lite0-224-tta8", "train_overrides": {"tta": 8}}, "restate.*tta=8"),
                          ({"preset": "lite0-224", "train_overrides": {"tta": 9}}, "tta must be in 1..8"),
                          ({"preset": "lite7"}, "unknown preset 'lite7'"),
                          ({"preset": "demo", "train_overrides": {"epoch": 3}}, "unknown TrainConfig field")):
        path = tmp_path / "p.yaml"
        path.write_text(yaml.safe_dump(body))
        with pytest.raises(ValueError, match=message):
            check_params(read_params(path), path, ["03_train_evaluate"])
    # a field that follows another (image size from the backbone, weights from the backbone) is no restatement when
    # the override of the other would change it: removing it would give another model
    for body in ({"preset": "lite1-240", "train_overrides": {"backbone": "efficientnetlite0", "image_size": 240}},
                 {"preset": "study-cnn", "train_overrides": {"backbone": "efficientnetlite0", "backbone_weights": "none"}}):
        check_preset(body, "ok.yaml")


def test_the_notebooks_default_recipe_is_a_preset() -> None:
    info = pm.inspect_notebook(str(config.NOTEBOOKS_DIR / "03_train_evaluate.ipynb"))
    assert info["preset"]["default"].strip("\"'") in PRESETS and info["train_overrides"]["default"] == "{}"
    demo = read_params(config.PARAMS_DIR / "demo.yaml")
    assert demo["preset"] == info["preset"]["default"].strip("\"'")  # the notebook's defaults are the demo's


def test_the_command_line_is_built_from_one_table_of_the_config_fields(tmp_path: Path) -> None:
    from melanoma_utils.cli.app import build_parser
    from melanoma_utils.models.train_options import NOT_ON_THE_COMMAND_LINE, TRAIN_OPTIONS

    on_cli = [o.field for o in TRAIN_OPTIONS]
    assert len(on_cli) == len(set(on_cli))
    # every field is either an option or left to presets on purpose: a new field must be decided, not forgotten
    assert set(on_cli) | set(NOT_ON_THE_COMMAND_LINE) == {f.name for f in fields(TrainConfig)}
    assert not set(on_cli) & set(NOT_ON_THE_COMMAND_LINE)
    text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    for opt in TRAIN_OPTIONS:
        assert opt.flags[0] in text
        if not opt.switch_off and opt.default_text is None:  # the default stated is TrainConfig's own
            assert f"(default: {TrainConfig.default(opt.field)})" in " ".join(text.split())
    csv = tmp_path / "m.csv"
    csv.write_text("x\n")
    from melanoma_utils.cli.train_commands import train_config

    got = train_config(build_parser().parse_args(["train", "--metadata", str(csv), "--out", str(tmp_path / "r"),
                                                  "--verbose", "2", "--n-boot", "50", "--weights", "none",
                                                  "--backbone", "cnn"]))
    assert (got.verbose, got.n_boot, got.backbone_weights, got.backbone) == (2, 50, None, None)


def test_a_config_is_resolved_when_made_and_frozen_after() -> None:
    """Nothing downstream fills in a field: the native size and the weights are decided by the constructor, and a
    made configuration cannot be changed (a variant is a new one, through dataclasses.replace, resolved again)."""
    import dataclasses

    from melanoma_utils.runs.run import TrainConfig

    cfg = TrainConfig()
    assert cfg.image_size == 224 and isinstance(cfg.image_size, int) and cfg.backbone_weights == "imagenet"
    assert TrainConfig(backbone="cnn").image_size == 128 and TrainConfig(image_size="192").image_size == 192
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.image_size = 96  # type: ignore[misc]
    small = dataclasses.replace(cfg, image_size=None, backbone="efficientnetlite1")
    assert small.image_size == 240 and cfg.image_size == 224  # re-resolved for the new backbone; the original unchanged
    with pytest.raises(ValueError, match="image_size 2000 is above"):
        dataclasses.replace(cfg, image_size=2000)
    mine = {"brightness": 0.1}
    made = TrainConfig(augment_config=mine)
    assert made.augment_config == mine and made.augment_config is not mine  # the caller's dict stays the caller's
    with pytest.raises(TypeError):
        hash(made)  # it holds a dict: frozen, not a key


def test_every_config_field_is_in_exactly_one_part_and_the_parts_are_resolved() -> None:
    """The model, data, fit and runtime parts split the recipe without gaps or overlaps (a new field must be placed),
    and each part carries the resolved values (the native size decided, the preset's fields in place)."""
    import dataclasses

    from melanoma_utils.models.train_config import MODEL_FIELDS, DataSpec, FitSpec, RuntimeSpec
    from melanoma_utils.runs.run import TrainConfig

    parts = [set(MODEL_FIELDS), *({f.name for f in dataclasses.fields(spec)} for spec in (DataSpec, FitSpec, RuntimeSpec))]
    everything = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set().union(*parts) == everything and sum(map(len, parts)) == len(everything)
    cfg = TrainConfig.from_preset("lite0-ft128", epochs=3, verbose=0, backbone="efficientnetlite1", image_size=None)
    assert cfg.data.image_size == 240 and cfg.fit.epochs == 3 and cfg.runtime.verbose == 0
    assert cfg.fit.finetune == TrainConfig.from_preset("lite0-ft128").finetune != "none"
    assert cfg.data.augment_config == cfg.augment_config and cfg.data.augment_config is not cfg.augment_config
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.fit.epochs = 4  # type: ignore[misc]
