"""Peak memory of COVAREP-74 on long recordings: one-shot vs segmented extraction, and how far
their frames agree. Goal (issue 13): a 60-minute recording in at most 1 GiB peak.

    python benchmarks/covarep_memory.py --minutes 5 20          # -> results/covarep_memory.md
    python benchmarks/covarep_memory.py --minutes 60 --no-oneshot

Each recording is the real reference WAVs of ``../shared/data/covarep-ref`` concatenated
(repeated) to N minutes and written as a 16 kHz float WAV in a temporary folder. Each run is a
fresh process, so its VmHWM is its own: ``oneshot`` decodes the file with ``load_audio`` and
runs :func:`~cmbert_pipe.acoustic.covarep.pipeline.extract` (what ``extract-audio`` did before);
``segmented`` runs :func:`~cmbert_pipe.acoustic.covarep.segments.extract_covarep74_segmented`
on the path (decoded segment by segment). The two runs of one length alternate, so both see the
same machine load; CPU seconds per audio second are printed as a ratio segmented / one-shot.
Agreement: per column, the share of rows equal in float32 and the largest absolute difference.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CMBERT_SHARED_DATA", REPO.parent / "shared" / "data"))
REF_DIR = SHARED / "covarep-ref"

_PROBE = r"""
import json, sys, time
import numpy as np
def hwm_mb():
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) for l in fh if l.startswith("VmHWM:")) / 1024
mode, path, out, core_s, margin_s = sys.argv[1:6]
from cmbert_pipe.acoustic.covarep import pipeline, segments
import soundfile as sf
seconds = sf.info(path).frames / 16000
before = hwm_mb()
t0 = time.process_time()
if mode == "oneshot":
    from cmbert_pipe.audio import load_audio
    f = pipeline.extract(load_audio(path), 16000).features
else:
    f = segments.extract_covarep74_segmented(path, core_s=float(core_s), margin_s=float(margin_s))
cpu = time.process_time() - t0
np.save(out, f)
print(json.dumps({"before_mb": before, "peak_mb": hwm_mb(), "rows": int(f.shape[0]),
                  "cpu_s_per_audio_s": cpu / seconds}))
"""


def write_recording(minutes: float, path: Path) -> None:
    """``minutes`` of real speech: the reference WAVs concatenated (repeated), 16 kHz float."""
    import soundfile as sf

    parts = [sf.read(p, dtype="float32")[0] for p in sorted(REF_DIR.glob("*.wav"))]
    if not parts:
        raise SystemExit(f"no reference WAVs in {REF_DIR} (set CMBERT_SHARED_DATA)")
    n = int(minutes * 60 * 16000)
    one = np.concatenate(parts)
    with sf.SoundFile(str(path), "w", 16000, 1, subtype="FLOAT") as fh:
        for k in range(n // one.size + 1):  # block by block: the parent stays small too
            fh.write(one[: min(one.size, n - k * one.size)])


def probe(mode: str, wav: Path, out: Path, core_s: float, margin_s: float) -> dict | None:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-c", _PROBE, mode, str(wav), str(out), str(core_s),
                          str(margin_s)], capture_output=True, text=True, env=env)
    if res.returncode != 0:
        print(f"{mode} failed:\n{res.stderr[-3000:]}", flush=True)
        return None
    return json.loads(res.stdout.strip().splitlines()[-1])


def agreement(a: np.ndarray, b: np.ndarray) -> list[list[str]]:
    from cmbert_pipe.acoustic.covarep import COVAREP74_COLUMNS

    rows = []
    groups = {"F0, VUV": ("F0", "VUV"), "NAQ, QOQ, H1H2, PSP, MDQ": ("NAQ", "QOQ", "H1H2", "PSP",
                                                                     "MDQ"),
              "peakSlope": ("peakSlope",), "Rd, Rd_conf": ("Rd", "Rd_conf"), "creak": ("creak",),
              "MCEP_0-24": tuple(f"MCEP_{i}" for i in range(25)),
              "HMPDM_0-24": tuple(f"HMPDM_{i}" for i in range(25)),
              "HMPDD_0-12": tuple(f"HMPDD_{i}" for i in range(13))}
    for label, names in groups.items():
        idx = [COVAREP74_COLUMNS.index(c) for c in names]
        same = (a[:, idx] == b[:, idx]).all(axis=1)
        diff = np.abs(a[:, idx].astype(np.float64) - b[:, idx])
        rows.append([label, f"{same.mean():.4f}", f"{(diff > 1e-4).any(axis=1).mean():.4f}",
                     f"{diff.max():.3g}"])
    return rows


def main() -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from _results import markdown_table, write_result

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, nargs="+", default=[5.0, 20.0])
    ap.add_argument("--core-s", type=float, default=60.0)
    ap.add_argument("--margin-s", type=float, default=2.0)
    ap.add_argument("--no-oneshot", action="store_true", help="segmented runs only")
    ap.add_argument("--name", default="covarep_memory")
    args = ap.parse_args()

    table, agree_md, data = [], "", {}
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        for minutes in args.minutes:
            wav = tmp / f"long_{minutes:g}min.wav"
            write_recording(minutes, wav)
            runs = {}
            for mode in (("segmented",) if args.no_oneshot else ("oneshot", "segmented")):
                r = probe(mode, wav, tmp / f"{mode}_{minutes:g}.npy", args.core_s, args.margin_s)
                print(minutes, mode, r, flush=True)
                if r is not None:
                    runs[mode] = r
            data[f"{minutes:g}min"] = runs
            one, seg = runs.get("oneshot"), runs.get("segmented")
            ratio = (f"{seg['cpu_s_per_audio_s'] / one['cpu_s_per_audio_s']:.2f}"
                     if one and seg else "–")
            for mode, r in runs.items():
                table.append([f"{minutes:g}", mode, f"{r['before_mb']:.0f}", f"{r['peak_mb']:.0f}",
                              f"{r['peak_mb'] - r['before_mb']:.0f}", f"{r['cpu_s_per_audio_s']:.3f}",
                              ratio if mode == "segmented" else ""])
            if one and seg:
                a = np.load(tmp / f"oneshot_{minutes:g}.npy")
                b = np.load(tmp / f"segmented_{minutes:g}.npy")
                rows = agreement(a, b)
                data[f"{minutes:g}min"]["agreement"] = rows
                agree_md += (f"\nAgreement, {minutes:g} minutes ({a.shape[0]} rows; equal: all "
                             "columns of the group bit-equal in float32):\n\n"
                             + markdown_table(["columns", "rows equal", "rows differing > 1e-4",
                                               "max abs difference"], rows))
    text = (
        f"Peak resident memory (VmHWM, MB) of one COVAREP-74 extraction of an N-minute recording "
        f"(real speech: the reference WAVs concatenated), each in a fresh process; 'before' is "
        f"the process after imports. Segments: {args.core_s:g} s cores, {args.margin_s:g} s "
        "margins. Goal: peak ≤ 1 GiB (1024 MB) for 60 minutes.\n\n"
        + markdown_table(["minutes", "run", "before", "peak", "added", "CPU s per audio s",
                          "CPU segmented / one-shot"], table)
        + agree_md
    )
    print("\n" + text)
    write_result(args.name, text, data, title="COVAREP-74 peak memory: one-shot vs segmented")


if __name__ == "__main__":
    main()
