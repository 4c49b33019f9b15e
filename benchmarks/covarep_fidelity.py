"""Column-by-column fidelity of the COVAREP-74 port against every reference CSV.

    OMP_NUM_THREADS=1 python benchmarks/covarep_fidelity.py            # all reference WAVs
    python benchmarks/covarep_fidelity.py --files arctic_a0007 tts_a  # a subset

For each WAV in ``../shared/data/covarep-ref`` the extractor's (K, 74) matrix is compared with
the CSV the original COVAREP (GNU Octave) wrote. Rows of all files are pooled; per column the
script prints a Markdown table with: Pearson r over all rows; r over voiced rows (reference
VUV = 1) for the glottal columns; the lowest per-file r; the median absolute error (circular,
|wrap(a - b)|, for the HMPDM phase columns); the 99th-percentile absolute error; and the
zero-mask agreement (fraction of rows where both are zero or both non-zero). For creak it also
prints the Spearman correlation and the ROC-AUC against the reference's binary decision
(3-point median > 0.3), docs/covarep74.md §11.4.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import time
from pathlib import Path

import numpy as np
import scipy.ndimage
import scipy.stats
import soundfile as sf

from cmbert_pipe.acoustic.covarep import COVAREP74_COLUMNS, COVAREP74_VERSION
from cmbert_pipe.acoustic.covarep.pipeline import extract

REPO = Path(__file__).resolve().parents[1]
REF_DIR = Path(os.environ.get("CMBERT_SHARED_DATA", REPO.parent / "shared" / "data")) / "covarep-ref"
HMPDD_EDGE_ROWS = 9
VOICED_COLUMNS = ("NAQ", "QOQ", "H1H2", "PSP", "MDQ", "peakSlope", "Rd", "Rd_conf")


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 2 or np.std(a) == 0 or np.std(b) == 0:
        return float("nan") if np.any(a != b) else 1.0
    return float(np.corrcoef(a, b)[0, 1])


def _abs_err(name: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = a - b
    if name.startswith("HMPDM"):
        d = d - np.round(d / (2 * np.pi)) * 2 * np.pi
    return np.abs(d)


def _fmt(v: float, digits: int = 4) -> str:
    return "–" if not np.isfinite(v) else f"{v:.{digits}f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", nargs="*", help="reference names (default: every WAV)")
    args = ap.parse_args()
    names = args.files or sorted(p.stem for p in REF_DIR.glob("*.wav"))
    mine, theirs, per_file, audio_s, cpu_s, missing = [], [], [], 0.0, 0.0, set()
    for name in names:
        x, fs = sf.read(REF_DIR / f"{name}.wav")
        ref = np.loadtxt(REF_DIR / f"{name}.csv", delimiter=",", skiprows=1, ndmin=2)
        t0 = time.process_time()
        result = extract(x, fs)
        cpu_s += time.process_time() - t0
        audio_s += x.shape[0] / fs
        missing.update(result.missing)
        if result.features.shape != ref.shape:
            print(f"- {name}: shape {result.features.shape} != reference {ref.shape}")
            k = min(result.features.shape[0], ref.shape[0])
            result.features, ref = result.features[:k], ref[:k]
        mine.append(result.features.astype(float))
        theirs.append(ref)
        per_file.append((name, result.features.astype(float), ref))
    a_all, b_all = np.concatenate(mine), np.concatenate(theirs)
    voiced = b_all[:, COVAREP74_COLUMNS.index("VUV")] > 0

    print(f"COVAREP-74 v{COVAREP74_VERSION} vs original COVAREP (Octave): {len(names)} files, "
          f"{a_all.shape[0]} rows, {audio_s:.1f} s of audio, {cpu_s / audio_s:.3f} s CPU per audio s")
    if missing:
        print(f"Column groups not computed (zeros): {', '.join(sorted(missing))}")
    print()
    print("| column | r (all rows) | r (voiced rows) | min r per file | median abs err | p99 abs err | zero-mask agree |")
    print("|---|---|---|---|---|---|---|")
    for j, name in enumerate(COVAREP74_COLUMNS):
        a, b = a_all[:, j], b_all[:, j]
        r_all = _pearson(a, b)
        r_voiced = _pearson(a[voiced], b[voiced]) if name in VOICED_COLUMNS else float("nan")
        r_files = [_pearson(f[:, j], r[:, j]) for _, f, r in per_file]
        r_min = float(np.nanmin(r_files)) if np.any(np.isfinite(r_files)) else float("nan")
        err = _abs_err(name, a, b)
        zero_agree = float(np.mean((a == 0) == (b == 0)))
        print(f"| {name} | {_fmt(r_all)} | {_fmt(r_voiced)} | {_fmt(r_min)} | {np.median(err):.3g} | "
              f"{np.percentile(err, 99):.3g} | {zero_agree:.4f} |")
    # HMPDD's first/last ~9 non-zero rows are numerically unstable even in Octave (docs/covarep74.md
    # §13): report the interior separately.
    dd = [j for j, c in enumerate(COVAREP74_COLUMNS) if c.startswith("HMPDD")]
    interior_err, interior_r = [], []
    for _, f, r in per_file:
        nz = np.flatnonzero(np.any(r[:, dd] != 0, axis=1))
        if nz.size > 2 * HMPDD_EDGE_ROWS + 2:
            rows = slice(nz[0] + HMPDD_EDGE_ROWS, nz[-1] - HMPDD_EDGE_ROWS + 1)
            interior_err.append(np.abs(f[rows][:, dd] - r[rows][:, dd]).max())
            interior_r += [_pearson(f[rows, j], r[rows, j]) for j in dd]
    if interior_err:
        print(f"\nHMPDD_0-12 on interior rows ({HMPDD_EDGE_ROWS} rows in from each end): max abs err "
              f"{max(interior_err):.3g}, min r per file and column {np.nanmin(interior_r):.6f}")
    vuv = COVAREP74_COLUMNS.index("VUV")
    print(f"\nVUV agreement: {np.mean(a_all[:, vuv] == b_all[:, vuv]):.4f}")
    c = COVAREP74_COLUMNS.index("creak")
    if np.any(a_all[:, c] != 0):
        rho = scipy.stats.spearmanr(a_all[:, c], b_all[:, c]).statistic
        ref_bin = np.concatenate([scipy.ndimage.median_filter(r[:, c], 3, mode="nearest") > 0.3 for _, _, r in per_file])
        if 0 < ref_bin.sum() < ref_bin.size:
            from sklearn.metrics import roc_auc_score

            auc = roc_auc_score(ref_bin, a_all[:, c])
            print(f"creak: Spearman {rho:.3f}, ROC-AUC vs reference decision {auc:.3f} "
                  f"({ref_bin.mean():.1%} creaky rows in the reference)")
        else:
            print(f"creak: Spearman {rho:.3f}")


if __name__ == "__main__":
    main()
