"""Sentiment regression metrics with the CMU-MOSI conventions (docs/design.md, "Metrics").

Rounding follows ``numpy.round`` (half to even), as the MOSI evaluation scripts do: a label of
2.5 is class 2, 1.5 is class 2, -0.5 is class 0.

- ``acc7``: ``round(clip(pred, ±3)) == round(clip(label, ±3))``;
- ``acc2_has0`` / ``f1_has0``: ``pred >= 0`` vs ``label >= 0`` over all samples;
- ``acc2_non0`` / ``f1_non0``: samples with ``label == 0`` dropped, ``> 0`` vs ``> 0``;
- ``acc2_paper``: ``pred > 0`` vs ``label > 0`` over all samples (the CM-BERT script);
- ``bacc2_non0``: balanced accuracy of the ``non0`` task (mean of the per-class recalls);
- ``mae``; ``corr``: Pearson correlation (NaN when either side is constant).
F1 scores are support-weighted over the two classes. Accuracies and F1 are fractions in [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

# Every metric, in the order tables show them.
METRIC_NAMES = ("acc2_has0", "f1_has0", "acc2_non0", "f1_non0", "bacc2_non0", "acc7", "mae",
                "corr", "acc2_paper")
# The pipeline report's columns: all but acc2_paper (the released CM-BERT script's convention,
# label 0 counted as negative), which stays in summary.json and the `cmbert train` table.
REPORT_METRICS = METRIC_NAMES[:-1]
UNSCALED = ("mae", "corr", "loss")  # shown as they are; every other metric is a fraction, in %


def class7(x):
    """The 7-class label: ``round(clip(x, -3, 3))`` with numpy's half-to-even rounding (array in,
    array out; a float in, a numpy float out)."""
    return np.round(np.clip(x, -3.0, 3.0))


def weighted_f1(truth: np.ndarray, pred: np.ndarray) -> float:
    """Support-weighted F1 over the classes present in ``truth`` (bool arrays)."""
    if len(truth) == 0:
        return float("nan")
    total = 0.0
    for cls in (False, True):
        support = int(np.sum(truth == cls))
        if support == 0:
            continue
        tp = int(np.sum((pred == cls) & (truth == cls)))
        fp = int(np.sum((pred == cls) & (truth != cls)))
        fn = support - tp
        f1 = 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)
        total += support * f1
    return total / len(truth)


def balanced_accuracy(truth: np.ndarray, pred: np.ndarray) -> float:
    recalls = [float(np.mean(pred[truth == c] == c)) for c in (False, True) if np.any(truth == c)]
    return float(np.mean(recalls)) if recalls else float("nan")


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson's r; NaN when either side is constant (checked exactly, before centring)."""
    if np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    a, b = a - a.mean(), b - b.mean()
    denom = math.sqrt(float(np.sum(a * a)) * float(np.sum(b * b)))
    return float(np.sum(a * b) / denom) if denom > 0 else float("nan")


def sentiment_metrics(preds: Sequence[float], labels: Sequence[float]) -> dict[str, float]:
    """Every metric of :data:`METRIC_NAMES` for predictions and labels (N,) in [-3, 3]."""
    p = np.asarray(preds, dtype=np.float64).reshape(-1)
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    if p.shape != y.shape or len(p) == 0:
        raise ValueError(f"need equally long non-empty preds and labels, got {p.shape}, {y.shape}")
    out: dict[str, float] = {}
    out["acc7"] = float(np.mean(class7(p) == class7(y)))
    out["acc2_has0"] = float(np.mean((p >= 0) == (y >= 0)))
    out["f1_has0"] = weighted_f1(y >= 0, p >= 0)
    non0 = y != 0
    if np.any(non0):
        out["acc2_non0"] = float(np.mean((p[non0] > 0) == (y[non0] > 0)))
        out["f1_non0"] = weighted_f1(y[non0] > 0, p[non0] > 0)
        out["bacc2_non0"] = balanced_accuracy(y[non0] > 0, p[non0] > 0)
    else:
        out["acc2_non0"] = out["f1_non0"] = out["bacc2_non0"] = float("nan")
    out["acc2_paper"] = float(np.mean((p > 0) == (y > 0)))
    out["mae"] = float(np.mean(np.abs(p - y)))
    out["corr"] = pearson(p, y)
    return out


def format_metric(name: str, value: float | None) -> str:
    """One metric for a table: fractions in % with one decimal, ``mae``/``corr``/``loss`` with
    three; "–" for a missing or NaN value."""
    if value is None or value != value:
        return "–"
    return f"{value:.3f}" if name in UNSCALED else f"{100.0 * value:.1f}"


def format_mean_std(name: str, stat: dict[str, float] | None) -> str:
    """A :func:`mean_std` entry as "mean ± std" (just the mean over one seed; "–" over none)."""
    if not stat or stat.get("n", 0) == 0 or stat["mean"] != stat["mean"]:
        return "–"
    text = format_metric(name, stat["mean"])
    if stat.get("n", 0) > 1:
        text += f" ± {format_metric(name, stat['std'])}"
    return text


def mean_std(runs: Sequence[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Per metric, mean and sample std (ddof=1) over seeds, ignoring NaN runs."""
    out = {}
    for name in runs[0] if runs else ():
        vals = np.array([r[name] for r in runs], dtype=np.float64)
        vals = vals[~np.isnan(vals)]
        out[name] = {
            "mean": float(vals.mean()) if len(vals) else float("nan"),
            "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0 if len(vals) else float("nan"),
            "n": int(len(vals)),
        }
    return out
