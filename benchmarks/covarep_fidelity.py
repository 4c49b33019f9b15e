"""Column-by-column fidelity of the COVAREP-74 port against every reference CSV.

    OMP_NUM_THREADS=1 python benchmarks/covarep_fidelity.py            # all reference WAVs
    python benchmarks/covarep_fidelity.py --files arctic_a0007 tts_a  # a subset
    python benchmarks/covarep_fidelity.py --base a36a52c              # + the same table for a commit

For each WAV in ``../shared/data/covarep-ref`` the extractor's (K, 74) matrix is compared with
the CSV the original COVAREP (GNU Octave) wrote. Rows of all files are pooled; per column the
script prints a Markdown table with: Pearson r over all rows; r over voiced rows (reference
VUV = 1) for the glottal columns; the lowest per-file r; the median absolute error (circular,
|wrap(a - b)|, for the HMPDM phase columns); the 99th-percentile absolute error; and the
zero-mask agreement (fraction of rows where both are zero or both non-zero). For creak it also
prints the Spearman correlation and the ROC-AUC against the reference's binary decision
(3-point median > 0.3), docs/covarep74.md §11.4.

With ``--base COMMIT`` (or a folder holding a ``cmbert_pipe`` package) the same table is also
computed for that version of the extractor, in a subprocess, and every printed cell that
differs between the two is listed (so "fidelity unchanged" is checked cell by cell). The
result goes to ``results/covarep_fidelity.md`` / ``.json``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.ndimage
import scipy.stats
import soundfile as sf

from cmbert_pipe.acoustic.covarep import COVAREP74_COLUMNS, COVAREP74_VERSION
from cmbert_pipe.acoustic.covarep.pipeline import extract

REPO = Path(__file__).resolve().parents[1]
REF_DIR = (
    Path(os.environ.get("CMBERT_SHARED_DATA", REPO.parent / "shared" / "data")) / "covarep-ref"
)
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


def compute_features(names: list[str]) -> tuple[list[tuple[str, np.ndarray]], float, float, set]:
    """(name, (K, 74) features) per reference WAV with the extractor on sys.path."""
    out, audio_s, cpu_s, missing = [], 0.0, 0.0, set()
    for name in names:
        x, fs = sf.read(REF_DIR / f"{name}.wav")
        t0 = time.process_time()
        result = extract(x, fs)
        cpu_s += time.process_time() - t0
        audio_s += x.shape[0] / fs
        missing.update(result.missing)
        out.append((name, result.features.astype(float)))
    return out, audio_s, cpu_s, missing


def fidelity_table(
    feats: list[tuple[str, np.ndarray]],
) -> tuple[list[str], dict[str, list[str]], list[str]]:
    """(header, {column: printed cells}, summary lines) against the reference CSVs."""
    mine, theirs, per_file, notes = [], [], [], []
    for name, f in feats:
        ref = np.loadtxt(REF_DIR / f"{name}.csv", delimiter=",", skiprows=1, ndmin=2)
        if f.shape != ref.shape:
            notes.append(f"- {name}: shape {f.shape} != reference {ref.shape}")
            k = min(f.shape[0], ref.shape[0])
            f, ref = f[:k], ref[:k]
        mine.append(f)
        theirs.append(ref)
        per_file.append((name, f, ref))
    a_all, b_all = np.concatenate(mine), np.concatenate(theirs)
    voiced = b_all[:, COVAREP74_COLUMNS.index("VUV")] > 0
    header = [
        "column",
        "r (all rows)",
        "r (voiced rows)",
        "min r per file",
        "median abs err",
        "p99 abs err",
        "zero-mask agree",
    ]
    cells = {}
    for j, name in enumerate(COVAREP74_COLUMNS):
        a, b = a_all[:, j], b_all[:, j]
        r_all = _pearson(a, b)
        r_voiced = _pearson(a[voiced], b[voiced]) if name in VOICED_COLUMNS else float("nan")
        r_files = [_pearson(f[:, j], r[:, j]) for _, f, r in per_file]
        r_min = float(np.nanmin(r_files)) if np.any(np.isfinite(r_files)) else float("nan")
        err = _abs_err(name, a, b)
        zero_agree = float(np.mean((a == 0) == (b == 0)))
        cells[name] = [
            _fmt(r_all),
            _fmt(r_voiced),
            _fmt(r_min),
            f"{np.median(err):.3g}",
            f"{np.percentile(err, 99):.3g}",
            f"{zero_agree:.4f}",
        ]
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
        notes.append(
            f"HMPDD_0-12 on interior rows ({HMPDD_EDGE_ROWS} rows in from each end): max abs "
            f"err {max(interior_err):.3g}, min r per file and column {np.nanmin(interior_r):.6f}"
        )
    vuv = COVAREP74_COLUMNS.index("VUV")
    notes.append(f"VUV agreement: {np.mean(a_all[:, vuv] == b_all[:, vuv]):.4f}")
    c = COVAREP74_COLUMNS.index("creak")
    if np.any(a_all[:, c] != 0):
        rho = scipy.stats.spearmanr(a_all[:, c], b_all[:, c]).statistic
        ref_bin = np.concatenate(
            [scipy.ndimage.median_filter(r[:, c], 3, mode="nearest") > 0.3 for _, _, r in per_file]
        )
        if 0 < ref_bin.sum() < ref_bin.size:
            from sklearn.metrics import roc_auc_score

            auc = roc_auc_score(ref_bin, a_all[:, c])
            notes.append(
                f"creak: Spearman {rho:.3f}, ROC-AUC vs reference decision {auc:.3f} "
                f"({ref_bin.mean():.1%} creaky rows in the reference)"
            )
        else:
            notes.append(f"creak: Spearman {rho:.3f}")
    notes.insert(0, f"{len(feats)} files, {a_all.shape[0]} rows")
    return header, cells, notes


def _base_features(
    base: str, names: list[str], tmp: Path
) -> tuple[list[tuple[str, np.ndarray]], dict]:
    """Features of the base version (a commit via ``git archive``, or a folder), in a subprocess."""
    tree = Path(base)
    if not (tree / "cmbert_pipe").is_dir():
        tree = tmp / "base"
        tree.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", base, "cmbert_pipe"],
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    out = tmp / "base.npz"
    env = dict(os.environ, PYTHONPATH=str(tree))
    proc = subprocess.run(
        [sys.executable, __file__, "--dump", str(out), "--files", *names],
        env=env,
        cwd=str(tree),
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"base extractor failed:\n{proc.stderr[-3000:]}")
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    data = np.load(out)
    return [(n, data[n]) for n in names], info


def main() -> None:
    from _results import markdown_table, write_result

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", nargs="*", help="reference names (default: every WAV)")
    ap.add_argument("--base", help="also compute the table for this commit (or package folder)")
    ap.add_argument("--dump", help=argparse.SUPPRESS)  # internal: save features for --base
    args = ap.parse_args()
    names = args.files or sorted(p.stem for p in REF_DIR.glob("*.wav"))
    feats, audio_s, cpu_s, missing = compute_features(names)
    if args.dump:
        np.savez(args.dump, **dict(feats))
        print(json.dumps({"version": COVAREP74_VERSION, "cpu_s_per_audio_s": cpu_s / audio_s}))
        return
    header, cells, notes = fidelity_table(feats)
    lines = [
        f"COVAREP-74 v{COVAREP74_VERSION} vs original COVAREP (Octave): {notes[0]}, "
        f"{audio_s:.1f} s of audio, {cpu_s / audio_s:.3f} s CPU per audio s"
    ]
    if missing:
        lines.append(f"Column groups not computed (zeros): {', '.join(sorted(missing))}")
    lines += ["", markdown_table(header, [[c, *cells[c]] for c in COVAREP74_COLUMNS])]
    lines += [n + "  " for n in notes[1:]]
    data = {
        "version": COVAREP74_VERSION,
        "cells": cells,
        "notes": notes,
        "cpu_s_per_audio_s": cpu_s / audio_s,
    }
    if args.base:
        with tempfile.TemporaryDirectory() as tmp:
            base_feats, info = _base_features(args.base, names, Path(tmp))
        _, base_cells, base_notes = fidelity_table(base_feats)
        diffs = [
            [c, header[i + 1], base_cells[c][i], cells[c][i]]
            for c in COVAREP74_COLUMNS
            for i in range(len(header) - 1)
            if base_cells[c][i] != cells[c][i]
        ]
        diffs += [["(summary)", "", b, a] for b, a in zip(base_notes, notes, strict=False) if a != b]
        lines += [
            "",
            f"Against `{args.base}` (COVAREP-74 v{info['version']}, "
            f"{info['cpu_s_per_audio_s']:.3f} s CPU per audio s in its own process): "
            + (
                "every printed cell is the same."
                if not diffs
                else f"{len(diffs)} printed cell(s) differ:"
            ),
        ]
        if diffs:
            lines += ["", markdown_table(["column", "figure", "base", "this tree"], diffs)]
        data["base"] = {
            "ref": args.base,
            **info,
            "cells": base_cells,
            "notes": base_notes,
            "differing_cells": diffs,
        }
    text = "\n".join(lines)
    print(text)
    write_result(
        "covarep_fidelity", text, data, title="COVAREP-74 fidelity against COVAREP (Octave)"
    )


if __name__ == "__main__":
    main()
