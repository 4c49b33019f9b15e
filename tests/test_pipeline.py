"""Pipeline recipes: TOML -> frozen configs, unknown keys named, overrides, effective config."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib

from cmbert_pipe.config import (
    PipelineConfig,
    config_from_dict,
    load_recipe,
    parse_override,
    to_toml,
)
from cmbert_pipe.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO / "pipelines").glob("*.toml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_every_shipped_recipe_loads_and_round_trips(recipe):
    config = load_recipe(recipe)
    assert isinstance(config, PipelineConfig)
    again = config_from_dict(tomllib.loads(to_toml(config)))
    assert again == config


def test_shipped_recipes_cover_the_datasets():
    kinds = {load_recipe(p).dataset.kind for p in RECIPES}
    assert {"manifest", "ravdess", "mosi"} <= kinds
    demo = load_recipe(REPO / "pipelines" / "demo.toml")
    assert Path(demo.data) == REPO / "assets" / "demo" / "manifest.csv"  # relative to the file
    ravdess = load_recipe(REPO / "pipelines" / "ravdess.toml")
    assert ravdess.dataset.options == {"train": [1, 2, 3, 4, 5, 6, 7, 8], "dev": [9, 10],
                                       "test": [11, 12]}
    assert ravdess.train.seeds == (0, 1, 2, 3, 4)


@pytest.mark.parametrize(
    "text, key",
    [
        ('colour = "red"', "colour"),
        ('[align]\nalignr = "mfa"', "align.alignr"),
        ("[features]\nfeature_sets = 1", "features.feature_sets"),
        ("[train]\nepoch = 3", "train.epoch"),
        ("[model]\ncls = 1", "model.cls"),
        ("[predict]\nclips = 1", "predict.clips"),
        ("[dataset]\nkinds = 1", "dataset.kinds"),
    ],
)
def test_unknown_keys_are_errors_naming_the_key(tmp_path, text, key):
    recipe = tmp_path / "r.toml"
    recipe.write_text(text)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as info:
        load_recipe(recipe)
    assert str(recipe) in str(info.value)


@pytest.mark.parametrize(
    "text, match",
    [
        ("[train]\nepochs = \"three\"", "train.epochs must be an integer"),
        ("[train]\nseeds = []", "train.seeds"),
        ("[train]\nbatch_size = 0", "train.batch_size must be at least 1, got 0"),
        ("[align]\njobs = 0", "align.jobs must be at least 1"),
        ("[features]\nfeature_set = \"mfcc\"", "features.feature_set must be one of"),
        ("[model]\nmodel = \"magbert\"\noptions = {betta = 1}", "model.options.betta"),
        ("[model]\nmodel = \"magbert\"\noptions = {beta = -1}",
         "model.options.beta must be positive"),
        ("[features]\nkeep_frames = 1", "features.keep_frames must be true or false"),
        ("[model]\ncls_audio = \"loud\"", "cls_audio"),
        ("[dataset]\nkind = \"imdb\"", "dataset.kind"),
        ("name = [1", "not valid TOML"),
    ],
)
def test_bad_values_are_errors(tmp_path, text, match):
    recipe = tmp_path / "r.toml"
    recipe.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_recipe(recipe)


def test_overrides_parse_as_toml_and_paths_resolve_against_cwd(tmp_path):
    assert parse_override("train.epochs=1") == (["train", "epochs"], 1)
    assert parse_override("train.seeds=[0, 1]") == (["train", "seeds"], [0, 1])
    assert parse_override("model.cls_audio=zero") == (["model", "cls_audio"], "zero")
    assert parse_override('model.bert="x y"') == (["model", "bert"], "x y")
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("train.epochs")
    config = load_recipe(REPO / "pipelines" / "mosi.toml",
                         ["data=CMU_MOSI_Raw", "train.epochs=1", "train.seeds=[7]",
                          "features.feature_set=egemaps"], cwd=tmp_path)
    assert config.data == str(tmp_path / "CMU_MOSI_Raw")
    assert config.train.epochs == 1 and config.train.seeds == (7,)
    assert config.features.feature_set == "egemaps"
    with pytest.raises(ConfigError, match="train.epocs"):
        load_recipe(REPO / "pipelines" / "demo.toml", ["train.epocs=1"])


def test_defaults_without_a_recipe_and_missing_recipe(tmp_path):
    config = load_recipe(None, [f"data={tmp_path}", "dataset.kind=folder"], cwd=tmp_path)
    assert config.data == str(tmp_path) and config.dataset.kind == "folder"
    assert config.features.feature_set == "covarep74" and config.align.aligner == "pocketsphinx"
    with pytest.raises(ConfigError, match="recipe not found"):
        load_recipe(tmp_path / "nope.toml")
    frozen = load_recipe(None)
    with pytest.raises(AttributeError):
        frozen.name = "x"  # frozen dataclass


def test_mosi_recipe_reads_a_raw_release_tree(tmp_path):
    """`cmbert run pipelines/mosi.toml --set data=...` sees the release's segments and folds."""
    import numpy as np
    import soundfile as sf

    from cmbert_pipe.datasets import mosi_folds
    from cmbert_pipe.pipeline import load_corpus

    root = tmp_path / "CMU_MOSI_Raw"
    (root / "Audio" / "WAV_16000" / "Segmented").mkdir(parents=True)
    (root / "Transcript" / "Segmented").mkdir(parents=True)
    (root / "Labels").mkdir()
    videos = (mosi_folds.TRAIN_VIDEOS[0], mosi_folds.DEV_VIDEOS[0], mosi_folds.TEST_VIDEOS[0])
    rows = []
    for i, video in enumerate(videos):
        sf.write(root / "Audio" / "WAV_16000" / "Segmented" / f"{video}_1.wav",
                 0.1 * np.random.default_rng(i).standard_normal(8000).astype(np.float32), 16000)
        (root / "Transcript" / "Segmented" / f"{video}.annotprocessed").write_text(
            f"1_DELIM_ IT WAS A GOOD BOOK {i}\n")
        rows.append(f"0.0,1.0,{video},1,{i - 1}.5")
    (root / "Labels" / "OpinionLevelSentiment.csv").write_text("\n".join(rows) + "\n")
    config = load_recipe(REPO / "pipelines" / "mosi.toml", [f"data={root}"])
    utterances, failures = load_corpus(config)
    assert not failures
    assert [(u.split, u.label) for u in utterances] == [("train", -1.5), ("dev", 0.5),
                                                         ("test", 1.5)]
    with pytest.raises(ConfigError, match="no corpus"):
        load_corpus(load_recipe(REPO / "pipelines" / "mosi.toml"))
