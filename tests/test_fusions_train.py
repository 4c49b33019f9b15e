"""The fusion models go through the shared trainer and bundle: train, save, load, predict.

One short epoch on a handful of utterances with the embedded MiniLM encoder; what is checked
is the plumbing (options survive the bundle, the reloaded model predicts exactly what the
trained one scored, extras come back), not accuracy."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from cmbert_pipe.model import ModelConfig
from cmbert_pipe.model.bundle import load_bundle
from cmbert_pipe.train import Example, TrainConfig, predict_examples, train_one

SENTENCES = ("kids are talking by the door", "dogs are sitting by the door",
             "i really loved this movie", "that was a terrible waste of time")


def examples(dim: int = 74) -> list[Example]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(16):
        words = tuple(SENTENCES[i % 4].split())
        label = 2.0 if i % 2 else -2.0
        feats = rng.normal(size=(len(words), dim)).astype(np.float32) + label
        split = "train" if i < 10 else "dev" if i < 13 else "test"
        out.append(Example(f"u{i}", words, feats, label, split))
    return out


@pytest.mark.parametrize("model,extra,ema", [
    ("magbert", {"mag_layer": 2, "beta": 0.5}, 0.0),
    ("cmsbert-clr", {"contrastive_weight": 0.2, "label_smoothing": 0.05}, 0.9),
])
def test_train_save_load_predict(tmp_path, model, extra, ema):
    threads = torch.get_num_threads()  # train_one sets it process-wide; give it back after
    try:
        check_round_trip(tmp_path, model, extra, ema)
    finally:
        torch.set_num_threads(threads)


def check_round_trip(tmp_path, model, extra, ema):
    exs = examples()
    cfg = ModelConfig(model=model, options=extra)
    res = train_one(exs, cfg, TrainConfig(epochs=1, batch_size=4, ema=ema, device="cpu",
                                          threads=1), seed=0, out_dir=tmp_path / "b")
    assert np.isfinite(res.metrics["test"]["mae"])
    saved = json.loads((tmp_path / "b" / "config.json").read_text())
    assert saved["model"] == model and saved["options"] == dataclasses.asdict(cfg.options)

    bundle = load_bundle(tmp_path / "b")
    assert type(bundle.model).registry_name == model
    assert bundle.model.options.__class__.__name__ in ("MagOptions", "CmsOptions")
    test = [x for x in exs if x.split == "test"]
    p1 = predict_examples(bundle.model, test, bundle.tokenizer, bundle.audio_stats)
    np.testing.assert_allclose(
        np.mean(np.abs(p1 - np.array([x.label for x in test]))), res.metrics["test"]["mae"],
        rtol=1e-5)

    from cmbert_pipe.model.inputs import prepare_batch

    batch = prepare_batch(bundle.tokenizer, [(x.words, x.word_features) for x in test],
                          bundle.config, bundle.audio_stats)
    with torch.no_grad():
        out = bundle.model.eval()(**batch)
    gate = out.extras["gate"]  # (B, L): the relative shift of each word-piece
    assert gate.shape == batch["input_ids"].shape
    assert (gate[batch["attention_mask"].bool()] > 0).any()
    assert (gate <= extra.get("beta", 1.0) + 1e-5).all()
