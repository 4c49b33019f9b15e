"""Does the audio count? Every model and every CMSBERT-CLR ablation on RAVDESS valence, beside
the majority class and a linear probe on the same word-pooled features; plus the MOSI
text-only check (shifting models with zero audio vs T-BERT) and training time per epoch.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/fusion_ablation.py \\
        --cache /work/runs/ravdess-cache-egemaps --out /work/runs/fusions-egemaps --seeds 5
    python benchmarks/fusion_ablation.py --mosi ../shared/data/mosi-text \\
        --out /work/runs/fusions-mosi --seeds 3 --epochs 3
    python benchmarks/fusion_ablation.py --cache /work/runs/ravdess-cache-egemaps --timing

RAVDESS (``--cache``): a feature cache of ``../shared/data/ravdess-dev`` with the
speaker-independent splits of :mod:`cmbert_pipe.datasets.ravdess` (train actors 01-08, dev
09-10, test 11-12). Every model is trained by :func:`cmbert_pipe.train.train_seeds` (same
encoder, recipe, epoch selection by dev loss, bundles), then its test predictions are scored:

- ``bacc`` / ``acc``: balanced accuracy and accuracy of ``pred > 0`` on the clips whose
  emotion is positive (calm, happy) or negative (sad, angry, fearful, disgust) — the binary
  task of ``../shared/data/README.md``; neutral and surprised are left out of it;
- ``mae`` / ``r``: on the valence scores of every test clip.

References, computed here on the same cache: the **majority class** of the training split
(its mean valence for MAE), and a **linear probe**: utterance vector = mean of its word
vectors, standardised on the training split; scikit-learn ``LogisticRegression`` on the binary
training clips for bacc/acc, ``Ridge`` on all training valences for MAE/r. Both are
deterministic (std 0).

Training time per epoch: the table shows the trainer's own epoch timer (wall clock, so on a
busy machine it depends on the load at the time); ``--timing`` measures every model
interleaved in one process and prints seconds per epoch with the ratio to T-BERT, the figure
to compare. Runs resume: finished seeds (and their cached test
predictions) are skipped, so a killed run continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

log = logging.getLogger("fusion_ablation")

EMA_DECAY = 0.95  # horizon ~20 steps = one RAVDESS epoch at batch 24


@dataclass(frozen=True)
class Row:
    """One line of the table: a model, its options and the trainer's EMA."""

    key: str  # folder name under --out, and what --only selects
    name: str
    model: str
    cls_audio: str = "mean"
    options: dict = field(default_factory=dict)
    ema: float = 0.0


RAVDESS_ROWS = (
    Row("tbert", "T-BERT (text only)", "tbert"),
    Row("cmbert-zero", "CM-BERT, cls_audio=zero (paper)", "cmbert", cls_audio="zero"),
    Row("cmbert-mean", "CM-BERT, cls_audio=mean", "cmbert"),
    Row("magbert", "MAG-BERT", "magbert"),
    Row("cmsbert-clr", "CMSBERT-CLR (all four parts)", "cmsbert-clr", ema=EMA_DECAY),
    Row("cmsbert-clr-no-cms", "  − context shifting", "cmsbert-clr", options={"cms": False},
        ema=EMA_DECAY),
    Row("cmsbert-clr-no-contrastive", "  − contrastive", "cmsbert-clr",
        options={"contrastive": False}, ema=EMA_DECAY),
    Row("cmsbert-clr-no-ema", "  − EMA", "cmsbert-clr"),
    Row("cmsbert-clr-no-ls", "  − label smoothing (ε = 0)", "cmsbert-clr",
        options={"label_smoothing": 0.0}, ema=EMA_DECAY),
    Row("cmsbert-clr-shift-only", "  shifting only (no CL, no aux head, no EMA)", "cmsbert-clr",
        options={"contrastive": False, "aux_weight": 0.0}),
)
MOSI_ROWS = (
    Row("t-bert", "T-BERT", "tbert"),
    Row("mag-bert-zero-audio", "MAG-BERT, zero audio", "magbert"),
    Row("cmsbert-clr-zero-audio", "CMSBERT-CLR, zero audio", "cmsbert-clr", ema=EMA_DECAY),
)


# -- RAVDESS scoring ---------------------------------------------------------------------------
def binary_truth(ids: list[str]) -> np.ndarray:
    """1 positive, 0 negative, -1 neither (neutral, surprised)."""
    from cmbert_pipe.datasets.ravdess import binary_class

    return np.array([(-1 if (c := binary_class(i)) is None else c) for i in ids])


def ravdess_scores(pred: np.ndarray, labels: np.ndarray, truth: np.ndarray,
                   pred_positive: np.ndarray | None = None) -> dict[str, float]:
    from cmbert_pipe.metrics import balanced_accuracy, pearson

    keep = truth >= 0
    pos = (pred > 0) if pred_positive is None else pred_positive
    t, p = truth[keep].astype(bool), pos[keep].astype(bool)
    return {"bacc": balanced_accuracy(t, p), "acc": float(np.mean(t == p)),
            "mae": float(np.mean(np.abs(pred - labels))), "r": pearson(pred, labels)}


def references(examples) -> dict[str, dict[str, float]]:
    """Majority class and the linear probe on mean-pooled word features."""
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.preprocessing import StandardScaler

    from cmbert_pipe.train import by_split

    parts = by_split(examples)
    train, test = parts["train"], parts["test"]

    def pooled(xs):
        return np.stack([np.nan_to_num(x.word_features.astype(np.float64)).mean(0) for x in xs])

    y_tr = np.array([x.label for x in train])
    y_te = np.array([x.label for x in test])
    c_tr, c_te = binary_truth([x.id for x in train]), binary_truth([x.id for x in test])
    scaler = StandardScaler().fit(pooled(train))
    x_tr, x_te = scaler.transform(pooled(train)), scaler.transform(pooled(test))

    majority = int(np.mean(c_tr[c_tr >= 0]) > 0.5)
    out = {"majority class": ravdess_scores(
        np.full(len(test), y_tr.mean()), y_te, c_te,
        pred_positive=np.full(len(test), bool(majority)))}
    keep = c_tr >= 0
    clf = LogisticRegression(max_iter=5000).fit(x_tr[keep], c_tr[keep])
    reg = Ridge(alpha=1.0).fit(x_tr, y_tr)
    out["linear probe (logistic / ridge)"] = ravdess_scores(
        reg.predict(x_te), y_te, c_te, pred_positive=clf.predict(x_te).astype(bool))
    out["majority class"]["r"] = float("nan")  # a constant has no correlation
    return out


def test_predictions(seed_dir: Path, test, split: str = "test") -> np.ndarray:
    """Predictions of a finished seed bundle on the clips of ``split`` (cached in the seed
    folder as ``<split>_preds.json``)."""
    cached = seed_dir / f"{split}_preds.json"
    ids = [x.id for x in test]
    if cached.is_file():
        d = json.loads(cached.read_text())
        if d.get("ids") == ids:
            return np.asarray(d["pred"])
    from cmbert_pipe.io import atomic_write_text
    from cmbert_pipe.model.bundle import load_bundle
    from cmbert_pipe.train import predict_examples

    bundle = load_bundle(seed_dir)
    pred = predict_examples(bundle.model, test, bundle.tokenizer, bundle.audio_stats)
    atomic_write_text(cached, json.dumps({"ids": ids, "pred": [float(v) for v in pred]}))
    return pred


def epoch_seconds(seed_dir: Path) -> list[float]:
    settings = seed_dir / "settings.json"
    if not settings.is_file():
        return []
    return list(json.loads(settings.read_text()).get("epoch_seconds", []))


# -- running rows ------------------------------------------------------------------------------
def run_row(row: Row, examples, settings, args, out_root: Path, *, epochs: int | None = None,
            lr_head: float | None = None, seeds: list[int] | None = None) -> Path:
    """Train ``row`` (its seeds 0..--seeds-1, or ``seeds``) into ``out_root/<row.key>``;
    ``epochs`` / ``lr_head`` override --epochs / the recipe's head learning rate."""
    import torch

    from cmbert_pipe.model import ModelConfig
    from cmbert_pipe.train import TrainConfig, audio_dim_of, train_seeds

    torch.set_num_threads(args.threads)
    mcfg = ModelConfig(model=row.model, cls_audio=row.cls_audio, options=dict(row.options),
                       audio_dim=audio_dim_of(examples, 74))
    tcfg = TrainConfig(epochs=epochs or args.epochs, ema=row.ema, device=args.device,
                       threads=args.threads, baselines=())
    if lr_head is not None:
        tcfg = TrainConfig(**{**tcfg.to_dict(), "lr_head": lr_head})
    row_dir = out_root / row.key
    log.info("== %s -> %s", row.name, row_dir)
    train_seeds(examples, mcfg, tcfg, seeds if seeds is not None else list(range(args.seeds)),
                row_dir, settings)
    return row_dir


def mean_std(values: list[float]) -> tuple[float, float]:
    v = np.asarray([x for x in values if not math.isnan(x)], dtype=np.float64)
    if len(v) == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def fmt(name: str, m: float, s: float) -> str:
    if math.isnan(m):
        return "—"
    if name in ("bacc", "acc", "acc2_non0", "f1_non0", "acc7"):
        return f"{100 * m:.1f} ± {100 * s:.1f}"
    return f"{m:.3f} ± {s:.3f}"


def ravdess(args) -> None:
    from cmbert_pipe.train import by_split, load_cache_examples

    examples, settings = load_cache_examples(args.cache)
    test = by_split(examples)["test"]
    labels = np.array([x.label for x in test])
    truth = binary_truth([x.id for x in test])
    out_root = Path(args.out)
    rows = [r for r in RAVDESS_ROWS if not args.only or r.key in args.only]
    table, times = [], {}
    refs = references(examples)
    for name, sc in refs.items():
        table.append((name, {k: (v, 0.0) for k, v in sc.items()}, 1))
    for row in rows:
        row_dir = run_row(row, examples, settings, args, out_root)
        per_seed = []
        secs: list[float] = []
        for seed in range(args.seeds):
            seed_dir = row_dir / f"seed-{seed}"
            per_seed.append(ravdess_scores(test_predictions(seed_dir, test), labels, truth))
            secs += epoch_seconds(seed_dir)
            if not args.keep_weights and seed > 0:
                (seed_dir / "model.safetensors").unlink(missing_ok=True)
        agg = {k: mean_std([s[k] for s in per_seed]) for k in per_seed[0]}
        table.append((row.name, agg, len(per_seed)))
        times[row.name] = float(np.mean(secs)) if secs else float("nan")
        print_ravdess(table, times, args)  # partial table after every row
    n_test = int(np.sum(truth >= 0))
    print(f"\ntest clips: {len(test)} ({n_test} in the binary task: "
          f"{int(np.sum(truth == 1))} positive, {int(np.sum(truth == 0))} negative)")


def print_ravdess(table, times, args, table_path: Path | None = None,
                  epochs: str | None = None) -> None:
    head = "| model | seeds | bacc (%) | acc (%) | MAE | r | wall s/epoch |"
    title = (f"\nRAVDESS valence, test actors 11-12, {epochs or args.epochs} epochs (cache "
             f"{args.cache}); wall s/epoch as timed by the trainer on a busy machine (--timing: "
             "comparable)")
    lines = [title, head, "|" + "---|" * 7]
    for name, agg, n in table:
        t = times.get(name, float("nan"))
        lines.append(f"| {name} | {n} | " + " | ".join(fmt(k, *agg[k]) for k in
                                                        ("bacc", "acc", "mae", "r"))
                     + (f" | {t:.1f} |" if not math.isnan(t) else " | — |"))
    print("\n".join(lines), flush=True)
    if args.out:
        path = table_path or Path(args.out) / "table.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines[1:]) + "\n")


# -- hyper-parameter selection on the dev split ------------------------------------------------
@dataclass(frozen=True)
class GridPoint:
    """One point of the --grid search: a row with β (the shifting models), head lr, epochs."""

    row: Row
    beta: float | None
    lr_head: float
    epochs: int

    @property
    def key(self) -> str:
        b = "" if self.beta is None else f"-b{self.beta:g}"
        return f"{self.row.key}{b}-lr{self.lr_head:g}-e{self.epochs}"

    @property
    def name(self) -> str:
        b = "" if self.beta is None else f", β = {self.beta:g}"
        return f"{self.row.name}{b}, head lr {self.lr_head:g}, {self.epochs} epochs"

    def as_row(self) -> Row:
        options = dict(self.row.options)
        if self.beta is not None:
            options["beta"] = self.beta
        return Row(self.key, self.name, self.row.model, self.row.cls_audio, options, self.row.ema)


def grid_points(args) -> list[GridPoint]:
    rows = [r for r in RAVDESS_ROWS if r.key in (args.only or ["magbert"])]
    shifting = ("magbert", "cmsbert-clr")  # the models with MAG's β (eq. 5 of MAG-BERT)
    return [GridPoint(r, b if r.model in shifting else None, lr, ep)
            for r in rows for b in (args.betas if r.model in shifting else [None])
            for lr in args.lr_heads for ep in args.epoch_list]


def split_scores(seed_dir: Path, clips) -> dict[str, float]:
    labels = np.array([x.label for x in clips])
    truth = binary_truth([x.id for x in clips])
    return ravdess_scores(test_predictions(seed_dir, clips, clips[0].split), labels, truth)


def grid(args) -> None:
    """Train every grid point with --grid-seeds seeds, score each on the DEV split (the same
    binary task and valence scores as the test table), pick per model the point with the best
    mean dev balanced accuracy (ties: higher dev r), and with --final train that point with
    --seeds seeds and print its TEST scores beside the references. The test split plays no
    part in the choice: the selection reads dev scores only."""
    from cmbert_pipe.train import by_split, load_cache_examples

    examples, settings = load_cache_examples(args.cache)
    parts = by_split(examples)
    dev, test = parts["dev"], parts["test"]
    out_root = Path(args.out) / "grid"
    points = grid_points(args)
    grid_seeds = list(range(args.grid_seeds))
    lines = [f"\nRAVDESS valence, DEV actors 09-10: grid of {len(points)} points x "
             f"{len(grid_seeds)} seeds (cache {args.cache})",
             "| model | seeds | dev bacc (%) | dev acc (%) | dev MAE | dev r |",
             "|---|---|---|---|---|---|"]
    results = {}
    for pt in points:
        row_dir = run_row(pt.as_row(), examples, settings, args, out_root, epochs=pt.epochs,
                          lr_head=pt.lr_head, seeds=grid_seeds)
        per_seed = [split_scores(row_dir / f"seed-{s}", dev) for s in grid_seeds]
        agg = {k: mean_std([x[k] for x in per_seed]) for k in per_seed[0]}
        results[pt.key] = agg
        lines.append(f"| {pt.name} | {len(per_seed)} | "
                     + " | ".join(fmt(k, *agg[k]) for k in ("bacc", "acc", "mae", "r")) + " |")
        print("\n".join(lines), flush=True)
    best: dict[str, GridPoint] = {}
    for pt in points:  # first of equals wins: the grid's order decides exact ties
        agg, cur = results[pt.key], best.get(pt.row.key)
        if cur is None or (agg["bacc"][0], agg["r"][0]) > (results[cur.key]["bacc"][0],
                                                          results[cur.key]["r"][0]):
            best[pt.row.key] = pt
    out_root.mkdir(parents=True, exist_ok=True)
    (out_root / "dev_table.md").write_text("\n".join(lines[1:]) + "\n")
    (out_root / "selection.json").write_text(json.dumps(
        {k: {"key": p.key, "beta": p.beta, "lr_head": p.lr_head, "epochs": p.epochs,
             "dev": {m: list(v) for m, v in results[p.key].items()}}
         for k, p in best.items()},
        indent=2) + "\n")
    for k, p in best.items():
        dev_bacc = fmt("bacc", *results[p.key]["bacc"])
        print(f"selected on dev for {k}: {p.name} (dev bacc {dev_bacc})")
    if not args.final:
        return
    labels = np.array([x.label for x in test])
    truth = binary_truth([x.id for x in test])
    table = [(n, {k: (v, 0.0) for k, v in sc.items()}, 1)
             for n, sc in references(examples).items()]
    seeds = args.final_seeds if args.final_seeds else list(range(args.seeds))
    for p in best.values():
        row_dir = run_row(p.as_row(), examples, settings, args, out_root, epochs=p.epochs,
                          lr_head=p.lr_head, seeds=seeds)
        per_seed = [ravdess_scores(test_predictions(row_dir / f"seed-{s}", test), labels, truth)
                    for s in seeds]
        table.append((f"{p.name} (selected on dev)",
                      {k: mean_std([x[k] for x in per_seed]) for k in per_seed[0]},
                      len(per_seed)))
    print_ravdess(table, {}, args, out_root / "test_table.md", epochs="dev-selected")


def mosi(args) -> None:
    from cmbert_pipe.train import load_text_examples

    examples, settings = load_text_examples(args.mosi)
    out_root = Path(args.out)
    head = "| model | seeds | acc2 non0 (%) | F1 non0 (%) | acc7 (%) | MAE | r | wall s/epoch |"
    title = ("\nMOSI text only (no audio: the shifting models get zeros), test split, "
             f"{args.epochs} epochs")
    lines = [title, head, "|" + "---|" * 8]
    for row in MOSI_ROWS:
        if args.only and row.key not in args.only:
            continue
        row_dir = run_row(row, examples, settings, args, out_root)
        summary = json.loads((row_dir / "summary.json").read_text())
        per_seed = [r["metrics"]["test"] for r in summary["per_seed"].values()]
        secs = [s for seed in range(args.seeds) for s in epoch_seconds(row_dir / f"seed-{seed}")]
        t = float(np.mean(secs)) if secs else float("nan")
        cells = [fmt(k, *mean_std([m[k] for m in per_seed]))
                 for k in ("acc2_non0", "f1_non0", "acc7", "mae", "corr")]
        lines.append(f"| {row.name} | {len(per_seed)} | " + " | ".join(cells)
                     + f" | {t:.1f} |")
        for seed in range(1, args.seeds):
            if not args.keep_weights:
                (row_dir / f"seed-{seed}" / "model.safetensors").unlink(missing_ok=True)
        print("\n".join(lines), flush=True)
        (out_root / "table.md").write_text("\n".join(lines[1:]) + "\n")


def timing(args) -> None:
    """Seconds per training epoch of every model, measured interleaved in one process.

    Each model is built once; then ``--rounds`` rounds each run one training step (forward,
    backward, AdamW step with the trainer's parameter groups) of every model on the same
    batch of 24 training utterances, so that a busy machine slows every model alike. The
    median step time × steps per epoch (training split / 24) is reported with its ratio to
    T-BERT's."""
    import time

    import torch

    from cmbert_pipe.model import ModelConfig, build_model
    from cmbert_pipe.model.ema import EMA
    from cmbert_pipe.model.inputs import AudioStats, load_tokenizer
    from cmbert_pipe.train import (
        TrainConfig,
        audio_dim_of,
        by_split,
        load_cache_examples,
        make_batches,
    )

    torch.set_num_threads(args.threads)
    examples, _ = load_cache_examples(args.cache)
    train = by_split(examples)["train"]
    dim = audio_dim_of(examples, 74)
    tcfg = TrainConfig()
    rows = [RAVDESS_ROWS[0], RAVDESS_ROWS[2], RAVDESS_ROWS[3], RAVDESS_ROWS[4]]
    tok = load_tokenizer("")
    stats = AudioStats.from_features([x.word_features for x in train], dim)
    runners = []
    for row in rows:
        torch.manual_seed(0)
        cfg = ModelConfig(model=row.model, cls_audio=row.cls_audio, options=dict(row.options),
                          audio_dim=dim)
        model = build_model(cfg).train()
        groups = model.param_groups(tcfg.lr_head, tcfg.lr_encoder, tcfg.weight_decay)
        opt = torch.optim.AdamW([{k: v for k, v in g.items() if k != "name"} for g in groups])
        batch = make_batches(train[:tcfg.batch_size], tok, cfg, stats, tcfg.batch_size)[0]
        ema = EMA(model, row.ema) if row.ema > 0 else None
        runners.append((row, model, opt, ema, batch, []))

    def step(model, opt, ema, batch):
        loss = model(**batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if ema is not None:
            ema.update(model)

    for _row, model, opt, ema, batch, _ in runners:  # warm-up
        step(model, opt, ema, batch)
    for _ in range(args.rounds):
        for _row, model, opt, ema, batch, times in runners:
            t0 = time.perf_counter()
            step(model, opt, ema, batch)
            times.append(time.perf_counter() - t0)
    steps = -(-len(train) // tcfg.batch_size)
    ref = float(np.median(runners[0][-1])) * steps
    print(f"\nTraining time per epoch ({len(train)} RAVDESS training utterances, batch "
          f"{tcfg.batch_size}, {steps} steps; median of {args.rounds} interleaved steps, "
          f"{args.threads} thread(s))")
    print("| model | s/step | s/epoch | × T-BERT |\n|---|---|---|---|")
    for row, *_, times in runners:
        t = float(np.median(times))
        print(f"| {row.name} | {t:.3f} | {t * steps:.1f} | {t * steps / ref:.2f} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--cache", help="RAVDESS feature cache (index.jsonl + cache.json)")
    src.add_argument("--mosi", help="folder with MOSI train/dev/test.tsv (text only)")
    p.add_argument("--out", default="", help="where the seed bundles and table.md go")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads; 1 on a shared machine (2 OpenMP threads on 2 busy cores "
                        "spin-wait: 20x slower steps measured)")
    p.add_argument("--device", default="auto")
    p.add_argument("--only", nargs="*", default=[],
                   help="row keys to run (default: all): "
                        + ", ".join(r.key for r in RAVDESS_ROWS + MOSI_ROWS))
    p.add_argument("--timing", action="store_true",
                   help="with --cache: only measure training time per epoch of each model")
    p.add_argument("--rounds", type=int, default=20, help="--timing: interleaved rounds")
    p.add_argument("--keep-weights", action="store_true",
                   help="keep model.safetensors of every seed (default: seed 0 only)")
    g = p.add_argument_group("--grid: hyper-parameter selection on the dev split")
    g.add_argument("--grid", action="store_true",
                   help="with --cache: train the grid (rows of --only, default magbert), "
                        "select on dev; --final then trains the dev-best with --seeds seeds "
                        "and prints its test scores")
    g.add_argument("--betas", type=float, nargs="+", default=[0.25, 1.0],
                   help="β values of MAG-BERT and CMSBERT-CLR")
    g.add_argument("--lr-heads", type=float, nargs="+", default=[1e-2, 1e-3])
    g.add_argument("--epoch-list", type=int, nargs="+", default=[3])
    g.add_argument("--grid-seeds", type=int, default=2, help="seeds per grid point")
    g.add_argument("--final", action="store_true", help="train and test the dev-best point")
    g.add_argument("--final-seeds", type=int, nargs="*", default=[],
                   help="train only these seeds of the final point (default 0..--seeds-1)")
    args = p.parse_args(argv)
    if not args.out and not args.timing:
        p.error("--out is needed (except with --timing)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        stream=sys.stderr)
    if args.cache and args.grid:
        grid(args)
    elif args.cache and args.timing:
        timing(args)
    elif args.cache:
        ravdess(args)
    else:
        mosi(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
