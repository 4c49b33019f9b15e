"""DDP training with real torch.distributed processes (gloo on CPU) on the demo clips' cache:
two processes train the same model as one process fed the same global batches; `--ddp 2` from
the CLI writes one bundle and one summary; a rank that dies stops the run with one message
and a re-run resumes from the last finished seed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cmbert_pipe.align import align_corpus, get_aligner
from cmbert_pipe.corpus import discover
from cmbert_pipe.extract import extract_corpus

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "assets" / "demo"
ENV = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")

# The check: with the same global batches, 2 ranks (local batch 4 each, gradients averaged by
# DDP) and 1 process (batch 8) compute the same updates up to float32 summation order (one
# sum over 8 rows vs two sums over 4 and an all-reduce). The size of that noise, measured on
# this data: the same single-process run with 1 vs 2 intra-op threads differs by <= 1.6e-6 in
# losses and 2 vs 1 gloo ranks by <= 3.1e-7 after 2 epochs. So losses, MAE and correlation
# must agree to 1e-5 (absolute): above the float noise, far below any real difference (a
# wrong shard, a double-counted or dropped batch, dropout still on: all >1e-3).
TOL = 1e-5


@pytest.fixture(scope="module")
def demo_cache(tmp_path_factory):
    """The demo clips aligned (pocketsphinx) and extracted (eGeMAPS) into a cache."""
    root = tmp_path_factory.mktemp("demo")
    scan = discover(DEMO / "manifest.csv")
    summary = align_corpus(scan.utterances, root / "align", get_aligner("pocketsphinx"), jobs=2)
    assert summary.done >= 20, summary.failures  # the aligner may refuse a poorly fitting clip
    refused = {f.item_id for f in summary.failures}
    summary = extract_corpus([u for u in scan.utterances if u.id not in refused],
                             root / "align", root / "cache", feature_set="egemaps", jobs=2)
    assert summary.ok, summary.failures
    return root / "cache"


@pytest.fixture(scope="module")
def encoder_without_dropout(tmp_path_factory):
    """The embedded MiniLM with its dropout set to 0 (weights linked, not copied): dropout
    masks depend on how a batch is split, so an exact comparison switches them off."""
    from cmbert_pipe.model.base import default_encoder_path

    src = Path(default_encoder_path())
    dst = tmp_path_factory.mktemp("minilm-nodrop")
    for f in src.iterdir():
        if f.name != "config.json":
            (dst / f.name).symlink_to(f)
    cfg = json.loads((src / "config.json").read_text())
    cfg.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


DRIVER = textwrap.dedent("""
    import json, sys
    from cmbert_pipe import distributed
    from cmbert_pipe.model.base import ModelConfig
    from cmbert_pipe.train import TrainConfig, audio_dim_of, load_cache_examples, train_seeds

    cache, out, bert, variant = sys.argv[1:5]
    distributed.init_from_env("cpu")
    examples, settings = load_cache_examples(cache)
    extra = {"audio_head": "pool", "audio_start": True} if variant == "audio-start" else {}
    mcfg = ModelConfig(model="cmbert", bert=bert, dropout=0.0,
                       attn_dropout=0.0, audio_dim=audio_dim_of(examples, 74), **extra)
    n_train = sum(ex.split == "train" for ex in examples)  # even: no rank pads its shard
    tcfg = TrainConfig(epochs=2, batch_size=8, device="cpu", threads=1,
                       max_train=n_train - n_train % 2)
    train_seeds(examples, mcfg, tcfg, [0], out, settings)
    distributed.shutdown()
""")


def _torchrun(nproc: int, *args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={nproc}", *args]


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["plain", "audio-start"])
def test_two_gloo_ranks_train_the_same_model_as_one_process(demo_cache, encoder_without_dropout,
                                                            tmp_path, variant):
    """``audio-start``: each rank loads the audio-only start rank 0 wrote (after the start's
    own DDP training), and the fusion trained from it matches the one-process run too."""
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    cache, bert = str(demo_cache), str(encoder_without_dropout)
    one = subprocess.run([sys.executable, str(driver), cache, str(tmp_path / "one"), bert,
                          variant], env=ENV, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run(_torchrun(2, str(driver), cache, str(tmp_path / "two"), bert, variant),
                         env=ENV, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    # with --audio-start, the start (baselines/audio) and the fusion trained from it
    for sub in [""] + (["baselines/audio"] if variant == "audio-start" else []):
        s1 = json.loads((tmp_path / "one" / sub / "summary.json").read_text())["per_seed"]["0"]
        s2 = json.loads((tmp_path / "two" / sub / "summary.json").read_text())["per_seed"]["0"]
        assert s1["best_epoch"] == s2["best_epoch"], sub
        for split in ("train", "dev", "test"):
            for metric in ("loss", "mae", "corr"):
                a, b = s1["metrics"][split][metric], s2["metrics"][split][metric]
                assert abs(a - b) <= TOL, (sub, split, metric, a, b)
            assert s1["metrics"][split]["acc7"] == s2["metrics"][split]["acc7"]
    # one bundle per seed, written once (by rank 0)
    expected = ["seed-0", "summary.json"] + (["baselines"] if variant == "audio-start" else [])
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(expected)


NORM = textwrap.dedent("""
    import torch
    from cmbert_pipe import distributed

    ctx = distributed.init_from_env("cpu")
    whole = torch.arange(24, dtype=torch.float32).reshape(4, 3, 2)  # (B, L, d)
    mine = whole[ctx.rank::2]  # this rank's half of the batch
    with torch.enable_grad():
        got = distributed.batch_norm(mine)
    with torch.no_grad():
        local = distributed.batch_norm(mine)
    assert torch.allclose(got, torch.linalg.vector_norm(whole.reshape(-1))), got
    assert torch.allclose(local, torch.linalg.vector_norm(mine.reshape(-1))), local
    distributed.shutdown()
""")


def test_a_batch_wide_norm_is_taken_over_every_rank_while_training(tmp_path):
    script = tmp_path / "norm.py"
    script.write_text(NORM)
    run = subprocess.run(_torchrun(2, str(script)), env=ENV, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]


@pytest.mark.slow
def test_cli_ddp_writes_one_bundle_and_resumes(demo_cache, tmp_path):
    out = tmp_path / "model"
    cmd = [sys.executable, "-m", "cmbert_pipe", "train", str(demo_cache), "--out", str(out),
           "--model", "cmbert", "--seeds", "1", "--epochs", "1", "--batch-size", "8",
           "--device", "cpu", "--ddp", "2"]
    first = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["per_seed"]) == ["0"] and "test" in summary["mean_std"]
    assert (out / "seed-0" / "model.safetensors").is_file()
    cmd[cmd.index("--out") + 1] = str(tmp_path / "odd")
    odd = subprocess.run(cmd[:-4] + ["--batch-size", "7", "--ddp", "2"], env=ENV,
                         capture_output=True, text=True, timeout=300)
    assert odd.returncode != 0 and "does not split over 2" in odd.stdout + odd.stderr
    odd_out = tmp_path / "odd"  # refused before any work: nothing in it (if it exists)
    assert not odd_out.exists() or not any(odd_out.iterdir())


def _rank_pid(root_pid: int, rank: int) -> int | None:
    import psutil

    for child in psutil.Process(root_pid).children(recursive=True):
        try:
            if child.environ().get("RANK") == str(rank) and "cmbert_pipe" in child.cmdline():
                return child.pid
        except psutil.Error:
            continue
    return None


@pytest.mark.slow
def test_a_dead_rank_stops_the_run_and_a_rerun_resumes(demo_cache, tmp_path):
    out = tmp_path / "model"
    cmd = [sys.executable, "-m", "cmbert_pipe", "train", str(demo_cache), "--out", str(out),
           "--model", "tbert", "--seeds", "2", "--epochs", "1", "--batch-size", "8",
           "--device", "cpu", "--ddp", "2"]
    run = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
    try:
        deadline = time.monotonic() + 240
        seed0 = out / "seed-0" / "metrics.json"
        while time.monotonic() < deadline and run.poll() is None:
            if seed0.is_file() and json.loads(seed0.read_text()).get("final"):
                break
            time.sleep(0.2)
        victim = _rank_pid(run.pid, 1)
        assert victim is not None, "rank 1 not found"
        os.kill(victim, signal.SIGKILL)
        output, _ = run.communicate(timeout=240)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 1, output[-3000:]
    assert "a training process failed" in output and "resume" in output
    assert not (out / "seed-1" / "metrics.json").is_file() or \
        not json.loads((out / "seed-1" / "metrics.json").read_text()).get("final")
    again = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["per_seed"]["0"].get("resumed") is True
    assert "resumed" not in summary["per_seed"]["1"]
