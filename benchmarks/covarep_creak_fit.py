"""Fit and validate the creak substitute (docs/covarep74.md §11.4 c) against the covarep-ref column.

    OMP_NUM_THREADS=2 nice -n 10 /work/venv/bin/python benchmarks/covarep_creak_fit.py

Features come from ``cmbert_pipe.acoustic.covarep.creak.creak_features``; the target is the
reference detector output ``creak_raw`` (``<name>_intermediate.mat``) turned into COVAREP's
binary decision (3-point median, > 0.3). A logistic regression is fitted on the TRAIN files and
evaluated on the others (VALID), on the 10 ms output grid against the reference CSV column:
Spearman rho, ROC-AUC, agreement and Cohen's kappa of the binary decisions, fraction of rows
> 0.3 and median |difference| on non-creaky rows. Prints the constants to paste into creak.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import scipy.io as sio
import soundfile as sf
from scipy.ndimage import median_filter
from scipy.stats import spearmanr
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import cohen_kappa_score, roc_auc_score

from cmbert_pipe.acoustic.covarep import creak
from cmbert_pipe.acoustic.covarep.lpres import lpc_residual

REF = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "covarep-ref"
TRAIN = ("arctic_a0007", "mfa_acoustic_corpus", "ravdess_03-01-01-01-01-01-08", "ravdess_03-01-03-01-01-01-02",
         "ravdess_03-01-04-01-01-01-03", "ravdess_03-01-05-01-01-01-04", "ravdess_03-01-06-01-01-01-05",
         "tts_a")


def binary(p: np.ndarray) -> np.ndarray:
    return median_filter(p, 3, mode="constant") > 0.3


def load(name):
    x, fs = sf.read(REF / f"{name}.wav", dtype="float64")
    m = sio.loadmat(REF / f"{name}_intermediate.mat")
    res18 = lpc_residual(x * m["polarity"].item(), 400, 80, 18)
    feats = creak.creak_features(x, fs, res18, m["srh_vuv"].ravel(), m["srh_f0"].ravel())
    raw = m["creak_raw"][:, 0]
    n = min(raw.size, feats.shape[0])
    ref_col = np.loadtxt(REF / f"{name}.csv", delimiter=",", skiprows=1)[:, 10]
    return x, fs, feats[:n], raw[:n], ref_col, res18, m["srh_vuv"].ravel(), m["srh_f0"].ravel()


def metrics(ours: np.ndarray, ref: np.ndarray) -> dict:
    rb, ob = binary(ref), binary(ours)
    out = {"rows": ref.size, "spearman": spearmanr(ours, ref).statistic,
           "agree": float(np.mean(rb == ob)), "ref_frac": float(np.mean(ref > 0.3)),
           "our_frac": float(np.mean(ours > 0.3)),
           "median_absdiff_noncreak": float(np.median(np.abs(ours - ref)[~rb]))}
    out["auc"] = roc_auc_score(rb, ours) if 0 < rb.sum() < rb.size else float("nan")
    out["kappa"] = cohen_kappa_score(rb, ob) if rb.any() or ob.any() else float("nan")
    return out


def main() -> int:
    names = sorted(p.stem for p in REF.glob("*.wav"))
    data = {n: load(n) for n in names}
    xtr = np.concatenate([data[n][2] for n in TRAIN])
    ytr = np.concatenate([binary(data[n][3]) for n in TRAIN])
    mean, std = xtr.mean(axis=0), xtr.std(axis=0) + 1e-9
    clf = LogisticRegression(C=1.0, max_iter=2000).fit((xtr - mean) / std, ytr)
    creak.FEATURE_MEAN, creak.FEATURE_STD = mean, std
    creak.WEIGHTS = clf.coef_[0]
    # shift the bias so that the training rows above 0.3 are as frequent as in the reference
    logit = (xtr - mean) / std @ clf.coef_[0]
    ref_rate = float(np.mean(ytr))
    creak.BIAS = float(np.log(0.3 / 0.7) - np.quantile(logit, 1 - ref_rate))
    clf.intercept_[0] = creak.BIAS
    np.set_printoptions(precision=8, floatmode="maxprec", linewidth=100)
    print("FEATURE_MEAN =", repr(mean))
    print("FEATURE_STD =", repr(std))
    print("WEIGHTS =", repr(clf.coef_[0]))
    print("BIAS =", float(clf.intercept_[0]))
    print(f"{'file':34s} {'set':5s} {'rows':>5s} {'rho':>6s} {'AUC':>6s} {'kappa':>6s} {'agree':>6s} "
          f"{'ref>.3':>6s} {'our>.3':>6s} {'med|d|':>7s}")
    pooled = {"train": ([], []), "valid": ([], [])}
    for n in names:
        x, fs, _, _, ref_col, res18, vuv, f0 = data[n]
        ours = creak.creak_posterior(x, fs, res18, f0, vuv)
        k = min(ours.size, ref_col.size)
        s = "train" if n in TRAIN else "valid"
        if n != "mfa_cold_corpus":
            pooled[s][0].append(ours[:k])
            pooled[s][1].append(ref_col[:k])
        r = metrics(ours[:k], ref_col[:k])
        print(f"{n:34s} {s:5s} {r['rows']:5d} {r['spearman']:6.3f} {r['auc']:6.3f} {r['kappa']:6.3f} "
              f"{r['agree']:6.3f} {r['ref_frac']:6.3f} {r['our_frac']:6.3f} {r['median_absdiff_noncreak']:7.4f}")
    for s, (o, rf) in pooled.items():
        r = metrics(np.concatenate(o), np.concatenate(rf))
        print(f"{'POOLED (without mfa_cold_corpus)':34s} {s:5s} {r['rows']:5d} {r['spearman']:6.3f} {r['auc']:6.3f} "
              f"{r['kappa']:6.3f} {r['agree']:6.3f} {r['ref_frac']:6.3f} {r['our_frac']:6.3f} "
              f"{r['median_absdiff_noncreak']:7.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
