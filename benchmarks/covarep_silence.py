"""CPU cost of COVAREP-74 on real clips with inserted digital silence vs the same clips without.

    OMP_NUM_THREADS=1 python benchmarks/covarep_silence.py
    OMP_NUM_THREADS=1 python benchmarks/covarep_silence.py --clips arctic_a0007:1.46:0.5

Runs of exact zeros make SRH return F0 = 1 Hz (docs/covarep74.md §16.1). Each case is a reference
WAV from ``../shared/data/covarep-ref`` with ``SECONDS`` of zeros inserted at ``AT`` seconds
(rounded to the 10 ms grid); the script prints CPU seconds of the clean and the silence clip,
CPU seconds per audio second of each, their ratio, and the per-stage CPU of the silence clip.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from cmbert_pipe.acoustic.covarep import COVAREP74_VERSION
from cmbert_pipe.acoustic.covarep.pipeline import extract

REPO = Path(__file__).resolve().parents[1]
REF_DIR = Path(os.environ.get("CMBERT_SHARED_DATA", REPO.parent / "shared" / "data")) / "covarep-ref"
DEFAULT_CLIPS = ("arctic_a0007:1.46:0.5", "mfa_acoustic_corpus:10.0:5.0")


def _cpu(x: np.ndarray, fs: int):
    t0 = time.process_time()
    result = extract(x, fs)
    return time.process_time() - t0, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", nargs="*", default=list(DEFAULT_CLIPS), help="NAME:AT_S:SECONDS")
    args = ap.parse_args()
    print(f"COVAREP-74 v{COVAREP74_VERSION}, digital silence inserted into real clips")
    print()
    x0, fs0 = sf.read(REF_DIR / f"{args.clips[0].split(':')[0]}.wav")
    extract(x0[: int(1.5 * fs0)], fs0)  # warm-up: lazy stage imports are not timed
    print("| clip | audio s (clean / with zeros) | CPU s clean | CPU s with zeros | CPU/audio s clean | "
          "CPU/audio s with zeros | ratio | slowest stages (with zeros) |")
    print("|---|---|---|---|---|---|---|---|")
    for spec in args.clips:
        name, at_s, dur_s = spec.split(":")
        x, fs = sf.read(REF_DIR / f"{name}.wav")
        at = round(float(at_s) * fs / 160) * 160
        y = np.concatenate([x[:at], np.zeros(round(float(dur_s) * fs)), x[at:]])
        cpu_x, _ = _cpu(x, fs)
        cpu_y, res = _cpu(y, fs)
        per_x, per_y = cpu_x / (x.size / fs), cpu_y / (y.size / fs)
        top = sorted(res.cpu_s.items(), key=lambda kv: -kv[1])[:3]
        stages = ", ".join(f"{k} {v:.2f}" for k, v in top)
        print(f"| {name} +{dur_s} s zeros at {at / fs:.2f} s | {x.size / fs:.2f} / {y.size / fs:.2f} | "
              f"{cpu_x:.2f} | {cpu_y:.2f} | {per_x:.3f} | {per_y:.3f} | {per_y / per_x:.2f} | {stages} |")


if __name__ == "__main__":
    main()
