"""CPU cost of the COVAREP-74 extractor per stage, on one core, on the reference WAVs.

    python benchmarks/covarep_speed.py                 # every reference WAV, 1 repetition
    python benchmarks/covarep_speed.py --repeat 3      # best of 3 per file (less noise)
    python benchmarks/covarep_speed.py --minutes 10    # peak memory on a 10-minute recording

Threads are pinned to 1 (OMP/OpenBLAS/MKL) so the figures are single-core CPU seconds
(``time.process_time``). Per stage it prints CPU seconds per second of audio, summed over the
files, and its share of the total; then the total, the real-time factor, and the speed-up over
COVAREP under GNU Octave (6-30 s of CPU per audio second on this kind of machine, as recorded in
``../shared/data/covarep-ref/README.md``). As a same-process yardstick for machine speed it
also times a reference computation on the same audio: a 25 ms / 10 ms Hann log-magnitude STFT
(512-point rfft), and prints the extractor's cost as a multiple of it.

With ``--minutes N`` it instead extracts one N-minute recording made by concatenating the real
reference WAVs and prints the peak resident memory of the process after each stage (a
high-water mark, so each stage's figure includes everything before it) next to the memory
held before extraction (Python, libraries and the decoded audio).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import resource
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import soundfile as sf

from cmbert_pipe.acoustic.covarep import COVAREP74_VERSION
from cmbert_pipe.acoustic.covarep.pipeline import extract

REPO = Path(__file__).resolve().parents[1]
REF_DIR = Path(os.environ.get("CMBERT_SHARED_DATA", REPO.parent / "shared" / "data")) / "covarep-ref"
OCTAVE_CPU_PER_AUDIO_S = (6.0, 30.0)  # s/s, COVAREP under GNU Octave (covarep-ref/README.md)


def stft_reference(x: np.ndarray, fs: int) -> float:
    """CPU seconds of a 25 ms / 10 ms log-magnitude STFT of ``x`` (the yardstick)."""
    t0 = time.process_time()
    win, hop = int(0.025 * fs), int(0.010 * fs)
    n = 1 + max(0, (x.size - win) // hop)
    idx = np.arange(win)[None, :] + hop * np.arange(n)[:, None]
    np.log(np.abs(np.fft.rfft(x[idx] * np.hanning(win), 512, axis=1)) + 1e-12)
    return time.process_time() - t0


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def memory_run(names: list[str], minutes: float) -> None:
    """Peak RSS after each stage while extracting one ``minutes``-long recording."""
    from cmbert_pipe.acoustic.covarep import pipeline

    parts = [sf.read(REF_DIR / f"{name}.wav")[0] for name in names]
    n = int(minutes * 60 * 16000)
    x = np.tile(np.concatenate(parts), n // sum(p.size for p in parts) + 1)[:n]
    base = _rss_mb()
    marks: list[tuple[str, float]] = []
    timed = pipeline._timed

    @contextmanager
    def watched(cpu_s, stage):
        with timed(cpu_s, stage):
            yield
        marks.append((stage, _rss_mb()))

    pipeline._timed = watched
    t0 = time.process_time()
    result = pipeline.extract(x, 16000)
    spent = time.process_time() - t0
    pipeline._timed = timed
    print(f"{minutes:g}-minute recording ({result.features.shape[0]} rows): "
          f"{spent / (n / 16000):.3f} s CPU per audio s")
    print(f"before extraction: {base:.0f} MB peak RSS")
    for stage, mb in marks:
        print(f"after {stage:<10s} {mb:7.0f} MB")
    print(f"extraction added at most {marks[-1][1] - base:.0f} MB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", nargs="*", help="reference names (default: every WAV)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per file; the fastest counts")
    ap.add_argument("--minutes", type=float, help="measure peak memory on one recording this long")
    args = ap.parse_args()
    names = args.files or sorted(p.stem for p in REF_DIR.glob("*.wav"))
    if args.minutes:
        memory_run(names, args.minutes)
        return
    x0, fs0 = sf.read(REF_DIR / f"{names[0]}.wav")
    extract(x0[: fs0 * 2], fs0)  # warm-up: imports, filter designs, FFT plans

    stages: dict[str, float] = {}
    audio_s = total_s = stft_s = 0.0
    per_file = []
    for name in names:
        x, fs = sf.read(REF_DIR / f"{name}.wav")
        best = None
        for _ in range(max(1, args.repeat)):
            t0 = time.process_time()
            result = extract(x, fs)
            spent = time.process_time() - t0
            if best is None or spent < best[0]:
                best = (spent, result.cpu_s)
        stft_s += min(stft_reference(x, fs) for _ in range(3))
        dur = x.shape[0] / fs
        audio_s += dur
        total_s += best[0]
        per_file.append((name, dur, best[0] / dur))
        for stage, sec in best[1].items():
            stages[stage] = stages.get(stage, 0.0) + sec

    print(f"COVAREP-74 v{COVAREP74_VERSION}: {len(names)} reference WAVs, {audio_s:.1f} s of audio, one core\n")
    print("| stage | CPU s per audio s | share |")
    print("|---|---|---|")
    for stage, sec in sorted(stages.items(), key=lambda kv: -kv[1]):
        print(f"| {stage} | {sec / audio_s:.4f} | {sec / total_s:.1%} |")
    rate = total_s / audio_s
    print(f"| **total** | **{rate:.4f}** | 100% |\n")
    print(f"real-time factor: {1 / rate:.1f}x faster than real time")
    print(f"speed-up over COVAREP/Octave ({OCTAVE_CPU_PER_AUDIO_S[0]:g}-{OCTAVE_CPU_PER_AUDIO_S[1]:g} s/s): "
          f"{OCTAVE_CPU_PER_AUDIO_S[0] / rate:.0f}x-{OCTAVE_CPU_PER_AUDIO_S[1] / rate:.0f}x")
    print(f"same-process yardstick: 25 ms/10 ms STFT {stft_s / audio_s:.5f} s/s; "
          f"extractor = {total_s / stft_s:.0f}x the STFT")
    print("\nper file (CPU s per audio s): " + ", ".join(f"{n} {r:.3f}" for n, _, r in per_file))


if __name__ == "__main__":
    main()
