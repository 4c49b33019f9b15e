"""Print the results tables of ``cmbert train`` runs (mean ± std over seeds) as Markdown.

    python benchmarks/train_results.py --run "T-BERT=runs/mosi-tbert"
    python benchmarks/train_results.py --majority-cache runs/ravdess-cache-egemaps \
        --ravdess-binary --run "CM-BERT mean=runs/r-mean" --run "T-BERT=runs/r-tbert"

Each ``--run LABEL=DIR`` is a folder written by ``cmbert train`` (``summary.json`` and
``seed-N`` bundles). ``--majority-cache`` adds the majority baseline: the constant prediction
that minimises training MSE (the training-label mean), scored like a model.
``--ravdess-binary`` re-scores every seed bundle on the README's RAVDESS binary task
(positive = calm, happy; negative = sad, angry, fearful, disgust; others left out), giving
accuracy and balanced accuracy. Accuracies and F1 are in %.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

COLUMNS = ("acc7", "acc2_non0", "f1_non0", "bacc2_non0", "acc2_has0", "f1_has0", "acc2_paper",
           "mae", "corr")


def fmt(name: str, mean: float, std: float | None) -> str:
    scale, digits = (1.0, 3) if name in ("mae", "corr") else (100.0, 1)
    if mean != mean:
        return "n/a"
    if std is None:
        return f"{scale * mean:.{digits}f}"
    return f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f}"


def binary_scores(run_dir: Path, split: str, examples) -> list[tuple[float, float]]:
    """(accuracy, balanced accuracy) on the RAVDESS binary task for every seed bundle."""
    import torch

    from cmbert_pipe.datasets.ravdess import binary_class
    from cmbert_pipe.metrics import balanced_accuracy
    from cmbert_pipe.model.bundle import load_bundle
    from cmbert_pipe.train import by_split, predict_examples

    torch.set_num_threads(1)
    xs = [e for e in by_split(examples)[split] if binary_class(e.id) is not None]
    truth = np.array([binary_class(e.id) == 1 for e in xs])
    out = []
    for seed_dir in sorted(run_dir.glob("seed-*")):
        b = load_bundle(seed_dir)
        pred = predict_examples(b.model, xs, b.tokenizer, b.audio_stats) > 0
        out.append((float(np.mean(pred == truth)), balanced_accuracy(truth, pred)))
    return out


def majority_row(examples, split: str) -> tuple[dict[str, float], float]:
    from cmbert_pipe.metrics import sentiment_metrics
    from cmbert_pipe.train import by_split

    parts = by_split(examples)
    const = float(np.mean([e.label for e in parts["train"]]))
    labels = [e.label for e in parts[split]]
    return sentiment_metrics([const] * len(labels), labels), const


def audio_ridge_row(examples, split: str) -> dict[str, float]:
    """An audio-only linear probe: ridge (alpha by leave-one-out CV on train) on the per-column
    mean and std of each utterance's word vectors, standardised with training statistics."""
    from sklearn.linear_model import RidgeCV
    from sklearn.preprocessing import StandardScaler

    from cmbert_pipe.metrics import sentiment_metrics
    from cmbert_pipe.train import by_split

    parts = by_split(examples)

    def feats(xs):
        return np.stack([np.concatenate([e.word_features.mean(0), e.word_features.std(0)])
                         for e in xs])

    scaler = StandardScaler().fit(feats(parts["train"]))
    ridge = RidgeCV(alphas=np.logspace(-2, 4, 25)).fit(
        scaler.transform(feats(parts["train"])), [e.label for e in parts["train"]])
    pred = ridge.predict(scaler.transform(feats(parts[split])))
    return sentiment_metrics(pred, [e.label for e in parts[split]]), pred > 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", action="append", default=[], help="LABEL=DIR (repeatable)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--majority-cache", type=Path, default=None)
    ap.add_argument("--majority-text", type=Path, default=None, help="TSV dir for the baseline")
    ap.add_argument("--ravdess-binary", action="store_true")
    ap.add_argument("--audio-ridge", action="store_true",
                    help="add an audio-only probe: ridge regression on the utterance mean and "
                         "std of the word features (needs --majority-cache)")
    args = ap.parse_args()

    examples = None
    if args.majority_cache is not None:
        from cmbert_pipe.train import load_cache_examples

        examples, _ = load_cache_examples(args.majority_cache)
    elif args.majority_text is not None:
        from cmbert_pipe.train import load_text_examples

        examples, _ = load_text_examples(args.majority_text)

    header = ["model", "seeds", "n"] + list(COLUMNS)
    if args.ravdess_binary:
        header += ["bin acc", "bin bacc"]
    print(f"split: {args.split}; mean ± std over seeds (sample std)\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    if examples is not None:
        m, const = majority_row(examples, args.split)
        row = [f"majority: constant train mean {const:+.3f}", "-", str(sum(e.split == args.split
                                                                 for e in examples))]
        row += [fmt(c, m[c], None) for c in COLUMNS]
        if args.ravdess_binary:
            from cmbert_pipe.datasets.ravdess import binary_class

            truth = np.array([binary_class(e.id) == 1 for e in examples
                              if e.split == args.split and binary_class(e.id) is not None])
            pred = np.full(len(truth), const > 0)
            row += [fmt("acc", float(np.mean(pred == truth)), None), fmt("acc", 0.5, None)]
        print("| " + " | ".join(row) + " |")
    if args.audio_ridge and examples is not None:
        m, pos = audio_ridge_row(examples, args.split)
        row = ["audio-only ridge probe", "-", str(sum(e.split == args.split for e in examples))]
        row += [fmt(c, m[c], None) for c in COLUMNS]
        if args.ravdess_binary:
            from cmbert_pipe.datasets.ravdess import binary_class
            from cmbert_pipe.metrics import balanced_accuracy

            xs = [e for e in examples if e.split == args.split]
            keep = np.array([binary_class(e.id) is not None for e in xs])
            truth = np.array([binary_class(e.id) == 1 for e in xs if binary_class(e.id) is not None])
            row += [fmt("acc", float(np.mean(pos[keep] == truth)), None),
                    fmt("acc", balanced_accuracy(truth, pos[keep]), None)]
        print("| " + " | ".join(row) + " |")
    speed = []
    for spec in args.run:
        label, _, path = spec.partition("=")
        run_dir = Path(path)
        summary = json.loads((run_dir / "summary.json").read_text())
        ms = summary["mean_std"][args.split]
        n = next(iter(summary["per_seed"].values()))["metrics"][args.split]["n"]
        row = [label, str(len(summary["per_seed"])), str(n)]
        row += [fmt(c, ms[c]["mean"], ms[c]["std"]) for c in COLUMNS]
        if args.ravdess_binary:
            scores = np.array(binary_scores(run_dir, args.split, examples))
            ddof = 1 if len(scores) > 1 else 0
            row += [fmt("acc", scores[:, 0].mean(), scores[:, 0].std(ddof=ddof)),
                    fmt("acc", scores[:, 1].mean(), scores[:, 1].std(ddof=ddof))]
        print("| " + " | ".join(row) + " |")
        epoch_s, rates, rss = [], [], []
        for seed_dir in sorted(run_dir.glob("seed-*")):
            st = json.loads((seed_dir / "settings.json").read_text())
            epoch_s += st.get("epoch_seconds", [])
            rates.append(st.get("train_samples_per_s", float("nan")))
            rss.append(st.get("peak_memory", {}).get("max_rss_mib", float("nan")))
        speed.append((label, summary["settings"].get("source"), np.mean(epoch_s), np.mean(rates),
                      np.max(rss), summary["wall_s"], st.get("device"), st["train"]["threads"]))
    print("\n| run | epoch wall s (mean) | train samples/s | peak RSS MiB | device | threads |")
    print("|---|---|---|---|---|---|")
    for label, _src, ep, rate, rss, _wall, dev, thr in speed:
        print(f"| {label} | {ep:.1f} | {rate:.1f} | {rss:.0f} | {dev} | {thr} |")


if __name__ == "__main__":
    main()
