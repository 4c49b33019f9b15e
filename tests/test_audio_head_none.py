"""``--audio-head none`` (the default) leaves every model exactly as it was before the acoustic
path existed: the same seed gives the same outputs and the same trained metrics.

``tests/data/audio_head_none_golden.json`` was written by this file's ``main()`` at commit
a36a52c (before the acoustic path; ``python tests/test_audio_head_none.py --write``) with the
embedded MiniLM encoder on CPU. The test recomputes everything with today's code. On the
machine that wrote the file the values agree to the last bit (checked with ``rtol=0, atol=0``
when ``CMBERT_EXACT=1``); elsewhere a 1e-5 tolerance absorbs BLAS kernel differences between
CPUs, which are far below any change a new layer, a new random draw or a new loss would make.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

GOLDEN = Path(__file__).parent / "data" / "audio_head_none_golden.json"
MODELS = ("tbert", "cmbert", "magbert", "cmsbert-clr")
# the same 16 synthetic examples as the fusion training tests, with 25-dim audio
from test_fusions_train import examples  # noqa: E402


def compute(model: str, tmp: Path) -> dict:
    """Forward outputs (eval and train mode, seed 0) and a two-epoch training run."""
    from cmbert_pipe.model import ModelConfig, build_model
    from cmbert_pipe.model.bundle import load_bundle
    from cmbert_pipe.model.inputs import AudioStats, load_tokenizer, prepare_batch
    from cmbert_pipe.train import TrainConfig, predict_examples, train_one

    exs = examples(25)
    cfg = ModelConfig(model=model, audio_dim=25)
    tok = load_tokenizer("")
    stats = AudioStats.from_features([x.word_features for x in exs], 25)
    batch = prepare_batch(tok, [(x.words, x.word_features) for x in exs[:6]], cfg, stats,
                          labels=[x.label for x in exs[:6]])
    torch.manual_seed(0)
    net = build_model(cfg)
    net.eval()
    with torch.no_grad():
        pred_eval = net(**batch).pred
    net.train()
    torch.manual_seed(1)
    out = net(**batch)
    res = train_one(exs, cfg, TrainConfig(epochs=2, batch_size=4, device="cpu", threads=1),
                    seed=0, out_dir=tmp / model)
    bundle = load_bundle(tmp / model)
    test = [x for x in exs if x.split == "test"]
    return {"pred_eval": pred_eval.tolist(), "pred_train": out.pred.tolist(),
            "loss_train": float(out.loss.detach()),
            "test_pred": predict_examples(bundle.model, test, bundle.tokenizer,
                                          bundle.audio_stats).tolist(),
            "dev_loss": res.metrics["dev"]["loss"], "best_epoch": res.best_epoch}


@pytest.mark.parametrize("model", MODELS)
def test_audio_head_none_is_todays_model(tmp_path, model):
    threads = torch.get_num_threads()
    try:
        got = compute(model, tmp_path)
    finally:
        torch.set_num_threads(threads)
    want = json.loads(GOLDEN.read_text())[model]
    tol = 0.0 if os.environ.get("CMBERT_EXACT") == "1" else 1e-5
    assert got["best_epoch"] == want["best_epoch"]
    for key in ("pred_eval", "pred_train", "loss_train", "test_pred", "dev_loss"):
        np.testing.assert_allclose(got[key], want[key], rtol=0, atol=tol, err_msg=key)


def main() -> None:
    import tempfile

    if "--write" not in sys.argv:
        raise SystemExit("usage: python tests/test_audio_head_none.py --write")
    with tempfile.TemporaryDirectory() as tmp:
        data = {m: compute(m, Path(tmp)) for m in MODELS}
    GOLDEN.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {GOLDEN}")


if __name__ == "__main__":
    main()
