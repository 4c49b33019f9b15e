"""Training end to end on a tiny real cache: 32 RAVDESS clips aligned with pocketsphinx and
pooled eGeMAPS features. Same seed twice gives identical metrics on CPU; a bundle reloaded in
a new process re-scores identically; Ctrl-C keeps the best checkpoint; finished seeds resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cmbert_pipe.errors import ModelError
from cmbert_pipe.model import ModelConfig
from cmbert_pipe.model.bundle import load_bundle
from cmbert_pipe.train import (
    TrainConfig,
    evaluate_bundle,
    load_cache_examples,
    load_text_examples,
    train_one,
    train_seeds,
)

torch.set_num_threads(2)
TINY = TrainConfig(epochs=1, batch_size=8, device="cpu")


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> str:
    """A small real BertModel checkpoint folder (2 layers, 32 hidden, random weights) with the
    embedded MiniLM's tokenizer: it exercises ``--bert PATH`` and keeps these runs fast."""
    from transformers import BertConfig, BertModel

    from cmbert_pipe.model.inputs import load_tokenizer

    out = tmp_path_factory.mktemp("tiny-bert")
    tok = load_tokenizer("")
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    BertModel(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="module")
def cache(shared_data, tmp_path_factory) -> Path:
    """32 real clips (calm, happy, sad, angry, both intensities; actors 1-2 train, 3 dev,
    4 test), aligned and
    extracted by the project's own stages."""
    from cmbert_pipe.align import get_aligner
    from cmbert_pipe.align.driver import align_corpus
    from cmbert_pipe.datasets.ravdess import RavdessSplits, load_ravdess
    from cmbert_pipe.extract import extract_corpus

    root = tmp_path_factory.mktemp("ravdess")
    scan = load_ravdess(shared_data / "ravdess-dev",
                        RavdessSplits(train=(1, 2), dev=(3,), test=(4,)))
    utts = [u for u in scan.utterances
            if u.id.split("-")[2] in ("02", "03", "04", "05") and u.id.split("-")[4] == "01"
            and u.id.split("-")[5] == "01"]
    assert len(utts) == 32
    summary = align_corpus(utts, root / "align", get_aligner("pocketsphinx"))
    # the aligner may refuse a clip whose words fit the sound poorly; the rest is enough
    assert len(summary.failures) <= 2, summary.failures
    refused = {f.item_id for f in summary.failures}
    utts = [u for u in utts if u.id not in refused]
    summary = extract_corpus(utts, root / "align", root / "cache", feature_set="egemaps")
    assert summary.ok, summary.failures
    return root / "cache"


@pytest.fixture(scope="module")
def examples(cache):
    return load_cache_examples(cache)


def test_cache_examples_carry_labels_splits_and_settings(examples):
    exs, settings = examples
    assert {e.split for e in exs} == {"train", "dev", "test"}
    assert all(e.word_features.shape == (len(e.words), 25) for e in exs)
    assert settings["cache_info"]["name"] == "egemaps"


def test_same_seed_twice_gives_identical_metrics_and_reload_rescores(examples, tiny_bert,
                                                                     tmp_path):
    exs, settings = examples
    cfg = ModelConfig(model="cmbert", bert=tiny_bert, audio_dim=25, max_len=16)
    r1 = train_one(exs, cfg, TINY, seed=3, out_dir=tmp_path / "a", settings=settings)
    r2 = train_one(exs, cfg, TINY, seed=3, out_dir=tmp_path / "b", settings=settings)
    assert r1.metrics == r2.metrics
    # The bundle is self-describing: stats from the training split, cache settings, metrics.
    bundle = load_bundle(tmp_path / "a")
    train_feats = np.concatenate([e.word_features for e in exs if e.split == "train"])
    np.testing.assert_allclose(bundle.audio_stats.mean, train_feats.mean(axis=0), rtol=1e-5,
                               atol=1e-6)
    assert bundle.settings["cache_info"]["name"] == "egemaps"
    assert bundle.metrics["final"] and bundle.metrics["test"] == r1.metrics["test"]
    # ... and re-scores identically in a new process, through the CLI.
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="2")
    proc = subprocess.run(
        [sys.executable, "-m", "cmbert_pipe", "evaluate", str(tmp_path / "a"),
         str(settings["cache"]), "--split", "test", "--split", "dev", "--device", "cpu",
         "--json"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rescored = json.loads(proc.stdout)
    assert rescored["test"] == r1.metrics["test"]
    assert rescored["dev"] == r1.metrics["dev"]


def test_ctrl_c_keeps_the_best_checkpoint_and_finished_seeds_resume(examples, tiny_bert,
                                                                   tmp_path):
    exs, settings = examples
    cfg = ModelConfig(model="tbert", bert=tiny_bert, audio_dim=25, max_len=16)

    def interrupt(epoch, metrics):
        if epoch == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_one(exs, cfg, TrainConfig(epochs=2, batch_size=8, device="cpu"), 0,
                  tmp_path / "int", settings, on_epoch=interrupt)
    bundle = load_bundle(tmp_path / "int")  # the epoch-1 checkpoint, complete and loadable
    assert bundle.metrics["final"] is False and "dev" in bundle.metrics

    calls = []
    s1 = train_seeds(exs, cfg, TINY, [0], tmp_path / "run", settings, on_seed=calls.append)
    s2 = train_seeds(exs, cfg, TINY, [0], tmp_path / "run", settings, on_seed=calls.append)
    assert calls == [0]  # the second call found seed 0 finished
    assert s2.per_seed[0].resumed and not s1.per_seed[0].resumed
    assert s1.test_metric("mae") == s2.test_metric("mae")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["model_config"]["model"] == "tbert" and "torch" in summary["versions"]


def test_evaluate_rejects_incomplete_bundles(examples, tmp_path):
    exs, _ = examples
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{}")
    with pytest.raises(ModelError, match="missing"):
        evaluate_bundle(tmp_path / "broken", exs, device="cpu")


@pytest.fixture()
def tiny_tsv(shared_data, tmp_path) -> Path:
    """The first rows of the real MOSI TSVs (train 64, dev 16, test 16)."""
    out = tmp_path / "mosi"
    out.mkdir()
    for split, n in (("train", 64), ("dev", 16), ("test", 16)):
        lines = (shared_data / "mosi-text" / f"{split}.tsv").read_text().splitlines()
        (out / f"{split}.tsv").write_text("\n".join(lines[: n + 1]) + "\n")
    return out


def test_cli_text_only_train_and_evaluate(tiny_tsv, tiny_bert, tmp_path):
    from cmbert_pipe.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["train", "--text-only", str(tiny_tsv), "--out", str(tmp_path / "m"),
                              "--model", "tbert", "--seeds", "1", "--epochs", "1",
                              "--max-len", "24", "--device", "cpu", "--bert", tiny_bert])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "m" / "summary.json").read_text())
    assert summary["model_config"]["options"] == {}
    assert set(summary["mean_std"]) == {"train", "dev", "test"}
    res = runner.invoke(app, ["evaluate", str(tmp_path / "m" / "seed-0"), "--text-only",
                              str(tiny_tsv), "--split", "test", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["test"] == summary["per_seed"]["0"]["metrics"]["test"]
    # a user error is one line and exit code 2, not a traceback
    res = runner.invoke(app, ["train", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2
    # an option the model does not take is named, not ignored
    res = runner.invoke(app, ["train", "--text-only", str(tiny_tsv), "--out", str(tmp_path / "y"),
                              "--model", "tbert", "--set", "model.options.note=tiny",
                              "--bert", tiny_bert])
    assert res.exit_code == 2 and "takes no options, got note" in res.output


def test_text_tsv_errors_name_the_file(tmp_path):
    (tmp_path / "train.tsv").write_text("text\tlabel\ngood\tnot-a-number\n")
    (tmp_path / "dev.tsv").write_text("text\tlabel\n")
    (tmp_path / "test.tsv").write_text("text\tlabel\n")
    with pytest.raises(ModelError, match="train.tsv"):
        load_text_examples(tmp_path)


def test_gpu_code_path_runs_on_cpu_bf16_autocast_with_ema(examples, tiny_bert, tmp_path):
    """The autocast + EMA path of the GPU step, run on CPU (bf16 autocast exists there)."""
    exs, settings = examples
    cfg = ModelConfig(model="cmbert", bert=tiny_bert, audio_dim=25, max_len=16)
    res = train_one(exs, cfg, TrainConfig(epochs=1, batch_size=8, device="cpu", amp="bf16",
                                          ema=0.9), 0, tmp_path / "bf16", settings)
    assert np.isfinite(res.metrics["test"]["mae"])
    assert load_bundle(tmp_path / "bf16").settings["amp"] == "torch.bfloat16"


@pytest.mark.gpu
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_cuda_training_with_autocast(examples, tiny_bert, tmp_path, amp):
    exs, settings = examples
    cfg = ModelConfig(model="cmbert", bert=tiny_bert, audio_dim=25, max_len=16)
    res = train_one(exs, cfg, TrainConfig(epochs=1, batch_size=8, device="cuda", amp=amp),
                    0, tmp_path / amp, settings)
    assert np.isfinite(res.metrics["test"]["mae"])
    cpu = evaluate_bundle(tmp_path / amp, exs, ["test"], device="cpu")
    assert cpu["test"]["mae"] == pytest.approx(res.metrics["test"]["mae"], abs=0.05)


def test_cli_audio_model_speaker_norm_train_evaluate(cache, tmp_path):
    """`cmbert train --model audio` with the binary objective, per-speaker standardisation and
    early stopping on a real cache; `cmbert evaluate` says the test speakers' statistics came
    from their own unlabelled audio."""
    from cmbert_pipe.cli import app

    runner = CliRunner()
    out = tmp_path / "audio"
    res = runner.invoke(app, ["train", str(cache), "--out", str(out), "--model", "audio",
                              "--audio-head", "pool", "--objective", "binary",
                              "--audio-norm", "speaker", "--epochs", "3", "--patience", "1",
                              "--select-metric", "bacc2_non0", "--lr-head", "1e-3",
                              "--seeds", "1", "--device", "cpu", "--threads", "1"])
    assert res.exit_code == 0, res.output
    assert "unlabelled" in res.output  # the note on per-speaker statistics
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model_config"]["model"] == "audio"
    assert summary["model_config"]["objective"] == "binary"
    assert summary["train_config"]["patience"] == 1 and summary["notes"]
    res = runner.invoke(app, ["evaluate", str(out / "seed-0"), str(cache), "--split", "test"])
    assert res.exit_code == 0, res.output
    assert "unlabelled" in res.output
