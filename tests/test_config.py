"""One typed configuration path: the registries and config.py agree, the CLI takes its defaults
and choices from the dataclasses, bad values are named before any work."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from cmbert_pipe import config
from cmbert_pipe.cli import app
from cmbert_pipe.config import (
    AlignConfig,
    FeaturesConfig,
    ModelConfig,
    TrainConfig,
    build,
    build_sections,
    load_recipe,
)
from cmbert_pipe.errors import ConfigError


def test_config_names_are_the_registries():
    from cmbert_pipe.acoustic.featuresets import FEATURE_SET_NAMES
    from cmbert_pipe.align import ALIGNERS
    from cmbert_pipe.datasets import DATASETS
    from cmbert_pipe.model import MODELS

    assert set(config.MODEL_NAMES) == set(MODELS)
    assert set(config.ALIGNER_NAMES) == set(ALIGNERS)
    assert set(config.FEATURE_SET_NAMES) == set(FEATURE_SET_NAMES)
    assert set(config.DATASET_KINDS) == set(DATASETS)
    for name, model_cls in MODELS.items():  # each model gets its own options type
        assert isinstance(ModelConfig(model=name).options, config.MODEL_OPTIONS[name])
        assert model_cls.registry_name == name


def test_the_loader_names_unknown_keys_and_bad_values():
    with pytest.raises(ConfigError, match=r"unknown key train\.epoch \(known in \[train\]"):
        build(TrainConfig, {"epoch": 1}, "train")
    with pytest.raises(ConfigError, match=r"train\.batch_size must be at least 1, got 0"):
        build(TrainConfig, {"batch_size": 0}, "train")
    with pytest.raises(ConfigError, match=r"train\.lr_head must be a number"):
        build(TrainConfig, {"lr_head": "fast"}, "train")
    with pytest.raises(ConfigError, match=r"align\.aligner must be one of pocketsphinx, mfa"):
        build(AlignConfig, {"aligner": "gentle"}, "align")
    with pytest.raises(ConfigError, match=r"model\.options\.mag_layer must be >= 1"):
        build(ModelConfig, {"model": "magbert", "options": {"mag_layer": 0}}, "model")
    with pytest.raises(ConfigError, match="unknown key data"):
        build_sections({"train": TrainConfig}, {}, ["data.path=x"])
    typed = build_sections({"features": FeaturesConfig, "train": TrainConfig},
                           {"features.jobs": 2}, ["train.seeds=[3, 4]"])
    assert typed["features"] == FeaturesConfig(jobs=2)
    assert typed["train"].seeds == (3, 4)


def test_recipe_and_set_build_the_same_objects_as_the_dataclasses(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('[model]\nmodel = "cmsbert-clr"\n[model.options]\ncms = false\n'
                      "[train]\nepochs = 2\n")
    loaded = load_recipe(recipe, ["model.options.temperature=0.2", "train.seeds=[1]"])
    assert loaded.model == ModelConfig(model="cmsbert-clr",
                                       options={"cms": False, "temperature": 0.2})
    assert loaded.train == TrainConfig(epochs=2, seeds=(1,))
    assert load_recipe(None).train.seeds == TrainConfig().seeds == config.DEFAULT_SEEDS


def _help(*command: str) -> str:
    result = CliRunner().invoke(app, [*command, "--help"], terminal_width=200,
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def test_help_shows_choices_from_the_registries_and_flags_as_flags():
    train = _help("train")
    assert "<" + "|".join(config.MODEL_NAMES) + ">" in train
    assert "<bool>" not in train
    assert "<" + "|".join(config.FEATURE_SET_NAMES) + ">" in _help("extract-audio")
    align = _help("align")
    assert "<" + "|".join(config.ALIGNER_NAMES) + ">" in align
    assert "<bool>" not in align and "<bool>" not in _help()


def _defaults(command: str) -> dict[str, object]:
    """The default each option of ``command`` shows in its help, by option name."""
    import typer

    cmd = typer.main.get_command(app).commands[command]
    out = {}
    for param in cmd.params:
        value = param.default
        out.update({opt: getattr(value, "value", value) for opt in param.opts})
    return out


def test_cli_defaults_are_the_dataclass_defaults():
    assert _defaults("align")["--jobs"] == AlignConfig().jobs
    assert _defaults("extract-audio")["--jobs"] == FeaturesConfig().jobs
    train = _defaults("train")
    assert train["--seeds"] == len(TrainConfig().seeds)
    assert train["--seed-start"] == TrainConfig().seeds[0]
    for option, value in (("--epochs", TrainConfig().epochs),
                          ("--batch-size", TrainConfig().batch_size),
                          ("--lr-head", TrainConfig().lr_head),
                          ("--model", ModelConfig().model),
                          ("--cls-audio", ModelConfig().cls_audio)):
        assert train[option] == value, option


@pytest.mark.parametrize("args, named", [
    (["train", "--text-only", ".", "--out", "x", "--batch-size", "0"], "--batch-size"),
    (["train", "--text-only", ".", "--out", "x", "--seeds", "0"], "--seeds"),
    (["train", "--text-only", ".", "--out", "x", "--set", "train.epoch=1"], "train.epoch"),
    (["align", ".", "--out", "x", "--jobs", "0"], "--jobs"),
    (["extract-audio", ".", "--alignments", ".", "--out", "x", "-j", "0"], "--jobs"),
])
def test_bad_option_values_are_named_before_any_work(tmp_path, args, named):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert named in result.output
    assert not (tmp_path / "x").exists()


def test_every_config_dataclass_is_frozen():
    for cls in (AlignConfig, FeaturesConfig, ModelConfig, TrainConfig, config.DatasetConfig,
                config.PredictConfig, config.PipelineConfig, config.MagOptions,
                config.CmsOptions):
        assert cls.__dataclass_params__.frozen, cls
        assert dataclasses.is_dataclass(cls)


def test_the_configuration_and_the_cli_help_import_no_torch():
    code = ("import sys, cmbert_pipe.config, cmbert_pipe.cli; "
            "sys.exit(int(any(m in sys.modules for m in ('torch', 'transformers'))))")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
