"""DDP training time per epoch: 1 process vs 2 gloo processes (torchrun) on the same data.

    OMP_NUM_THREADS=1 python benchmarks/scale_ddp.py --clips 64 --epochs 2

Builds a small cache from RAVDESS clips (``../shared/data/ravdess-dev``, actors split as in
pipelines/ravdess.toml; pocketsphinx alignment, eGeMAPS features), then trains CM-BERT (the
embedded MiniLM encoder, batch 8, one seed) three ways and reads each run's epoch times from
its bundle:

- 1 process, 1 thread (the reference);
- 1 process, 2 threads (the same two cores used by intra-op parallelism);
- ``cmbert train --ddp 2``: 2 gloo processes of 1 thread, local batch 4 each.

Reported: seconds per epoch (the mean over epochs after the first) and the speed-up against
the reference. On a shared 2-core machine with other jobs running, two processes compete for
the cores with everything else; the stamp records the load.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from _results import markdown_table, write_result  # noqa: E402

from cmbert_pipe.align import align_corpus, get_aligner  # noqa: E402
from cmbert_pipe.datasets.ravdess import RavdessSplits, load_ravdess  # noqa: E402
from cmbert_pipe.extract import extract_corpus  # noqa: E402

SHARED = Path(os.environ.get("CMBERT_SHARED_DATA", REPO.parent / "shared" / "data"))


def _train(cache: Path, out: Path, epochs: int, threads: int, ddp: int) -> list[float]:
    cmd = [sys.executable, "-m", "cmbert_pipe", "train", str(cache), "--out", str(out),
           "--model", "cmbert", "--seeds", "1", "--epochs", str(epochs), "--batch-size", "8",
           "--device", "cpu", "--threads", str(threads), "--baselines", ""]
    if ddp:
        cmd += ["--ddp", str(ddp)]
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1",
               OMP_NUM_THREADS=str(threads))
    subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    cfg = json.loads((out / "seed-0" / "settings.json").read_text())
    return [float(s) for s in cfg["epoch_seconds"]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    splits = RavdessSplits(train=(1, 2, 3, 4, 5, 6, 7, 8), dev=(9, 10), test=(11, 12))
    scan = load_ravdess(SHARED / "ravdess-dev", splits)
    utts = sorted(scan.utterances, key=lambda u: u.id)
    step = max(1, len(utts) // args.clips)
    utts = utts[::step][: args.clips]
    work = Path(tempfile.mkdtemp(prefix="scale_ddp_"))
    try:
        s = align_corpus(utts, work / "align", get_aligner("pocketsphinx"), jobs=2)
        e = extract_corpus([u for u in utts if u.id not in {f.item_id for f in s.failures}],
                           work / "align", work / "cache", feature_set="egemaps", jobs=2)
        n_train = sum(u.split == "train" for u in utts) - len(s.failures) - len(e.failures)
        runs: dict[str, dict] = {}
        configs = (("1 process × 1 thread", 1, 0), ("2 DDP processes × 1 thread (gloo)", 1, 2),
                   ("1 process × 2 threads", 2, 0))
        for rep in range(args.repeats):  # interleaved, so a change of load hits every config
            for name, threads, ddp in configs:
                secs = _train(work / "cache", work / f"{rep}-{ddp}-{threads}", args.epochs,
                              threads, ddp)
                later = secs[1:] or secs
                r = runs.setdefault(name, {"epoch_seconds": [], "per_repeat": []})
                r["epoch_seconds"].append(secs)
                r["per_repeat"].append(sum(later) / len(later))
                print(f"{name:36s} {r['per_repeat'][-1]:.1f} s/epoch  {secs}")
        for r in runs.values():
            r["s_per_epoch"] = sum(r["per_repeat"]) / len(r["per_repeat"])
        ref = runs["1 process × 1 thread"]["s_per_epoch"]
        rows = [[name, f"{r['s_per_epoch']:.1f}",
                 " / ".join(f"{x:.1f}" for x in r["per_repeat"]), f"{ref / r['s_per_epoch']:.2f}×"]
                for name, r in runs.items()]
        body = (
            f"CM-BERT (embedded MiniLM), batch 8, {args.epochs} epochs on {n_train} training "
            f"clips of RAVDESS (eGeMAPS cache of {len(utts)} clips); seconds per epoch are the "
            "mean over the epochs after the first, as recorded in each bundle.\n\n"
            + markdown_table(["training", "s / epoch", "per repeat", "speed-up"], rows)
            + "\nThe DDP run trains the same global batches as the 1-process runs (same seeded "
            "order, local batch 4 per rank, gradients averaged; tests/test_distributed.py "
            "checks the metrics agree to 1e-5). Its epoch time includes one gradient "
            "all-reduce per step over gloo; rank 0 alone evaluates the dev split (not timed: "
            "the epoch time is the training steps). A local batch of 4 is also padded only "
            "to its own longest transcript, which can make two ranks more than 2× faster "
            "than one. Configurations run interleaved, repeated; with other jobs on the two "
            "cores, the repeats show how much the load moved.\n")
        write_result("scale_ddp", body, {"clips": len(utts), "n_train": n_train,
                                         "epochs": args.epochs, "runs": runs},
                     title="DDP training on CPU: 1 vs 2 processes")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
