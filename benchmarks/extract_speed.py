"""Speed and memory of the extract stage, per feature set, on the COVAREP reference WAVs.

    OMP_NUM_THREADS=1 python benchmarks/extract_speed.py                  # every available set
    python benchmarks/extract_speed.py --sets egemaps compare --minutes 10

Prints, per feature set:
- CPU seconds per audio second of ``extract_frames`` on one core (``time.process_time`` in
  this process, threads pinned to 1), summed over the reference WAVs, and the speed-up against
  COVAREP under GNU Octave (6–30 s of CPU per audio second on this kind of machine, as recorded
  in ``../shared/data/covarep-ref/README.md``);
- throughput of the whole driver (:func:`cmbert_pipe.extract.extract_corpus`: decode, extract,
  pool, write the cache) with ``jobs=1`` and ``jobs=2``, in audio seconds per wall second, and
  their ratio (each run starts from an empty cache; one word interval per clip);
- peak resident memory (VmHWM) of a fresh process extracting a ``--minutes`` long recording made by
  concatenating the real reference clips, next to the peak of the same process that only
  decoded it (the difference is what extraction costs).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
REF_DIR = Path(os.environ.get("CMBERT_SHARED_DATA", REPO.parent / "shared" / "data")) / "covarep-ref"
OCTAVE_CPU_PER_AUDIO_S = (6.0, 30.0)  # s/s, COVAREP under GNU Octave (covarep-ref/README.md)

# Peak RSS is read from VmHWM (this process's own address space): ru_maxrss would carry the
# parent's peak over fork + exec on Linux and hide small figures.
_MEMORY_PROBE = r"""
import json, sys, numpy as np

def hwm_kib():
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))

from cmbert_pipe.audio import load_audio
wave = load_audio(sys.argv[1])
decoded = hwm_kib()
if sys.argv[2] != "-":
    from cmbert_pipe.acoustic import extract_frames
    frames = extract_frames(wave, 16000, sys.argv[2])
    shape = list(frames.shape)
else:
    shape = []
print(json.dumps({"decoded_kib": decoded, "peak_kib": hwm_kib(), "shape": shape}))
"""


def available_sets(requested: list[str] | None) -> list[str]:
    from cmbert_pipe.acoustic import FEATURE_SET_NAMES, get_feature_set
    from cmbert_pipe.errors import ConfigError

    names = []
    for name in requested or FEATURE_SET_NAMES:
        try:
            get_feature_set(name)
        except ConfigError as e:
            print(f"# {name}: not available ({e})")
            continue
        names.append(name)
    return names


def cpu_per_audio_second(name: str, waves: list[np.ndarray]) -> tuple[float, float]:
    """(CPU s per audio s, audio s) of extract_frames over ``waves`` (first call warmed up)."""
    from cmbert_pipe.acoustic import extract_frames

    extract_frames(waves[0][:16000], 16000, name)  # warm-up: imports, config parsing
    audio_s = sum(len(w) for w in waves) / 16000
    t0 = time.process_time()
    for w in waves:
        extract_frames(w, 16000, name)
    return (time.process_time() - t0) / audio_s, audio_s


def driver_throughput(name: str, wavs: list[Path], jobs: int) -> float:
    """Audio seconds per wall second of extract_corpus from an empty cache."""
    from cmbert_pipe.align.textgrid import write_textgrid
    from cmbert_pipe.audio import load_audio
    from cmbert_pipe.extract import extract_corpus
    from cmbert_pipe.schema import Alignment, Utterance, WordInterval

    with tempfile.TemporaryDirectory() as tmp:
        align_dir = Path(tmp) / "align"
        utts, audio_s = [], 0.0
        for wav in wavs:
            dur = len(load_audio(wav)) / 16000
            audio_s += dur
            write_textgrid(Alignment(wav.stem, (WordInterval("all", 0.0, dur),), duration_s=dur),
                           align_dir / f"{wav.stem}.TextGrid")
            utts.append(Utterance(wav.stem, wav, "all"))
        t0 = time.perf_counter()
        summary = extract_corpus(utts, align_dir, Path(tmp) / "cache", name, jobs=jobs)
        wall = time.perf_counter() - t0
        if summary.failures:
            print(f"# {name} jobs={jobs}: {len(summary.failures)} failed: "
                  f"{summary.failures[0].reason}")
    return audio_s / wall


def memory_probe(wav: Path, name: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, str(wav), name],
                         capture_output=True, text=True, check=True, cwd=REPO,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", nargs="*", help="feature sets (default: every available one)")
    ap.add_argument("--minutes", type=float, default=10.0, help="length of the long recording")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--memory-only", action="store_true", help="only the long-recording probe")
    args = ap.parse_args()

    import soundfile as sf

    from cmbert_pipe.audio import load_audio

    wavs = sorted(REF_DIR.glob("*.wav"))
    if not wavs:
        sys.exit(f"no reference WAVs in {REF_DIR}")
    waves = [load_audio(w) for w in wavs]
    sets = available_sets(args.sets)
    print(f"# {len(wavs)} reference WAVs, {sum(map(len, waves)) / 16000:.1f} s of audio; "
          f"{os.cpu_count()} CPU(s) visible")
    if not args.memory_only:
        print("| set | CPU s per audio s (1 core) | vs Octave COVAREP (6–30 s/s) | "
              "driver audio s/s, jobs=1 | jobs=2 | jobs=2 / jobs=1 |")
        print("|---|---|---|---|---|---|")
    for name in [] if args.memory_only else sets:
        cpu, _ = cpu_per_audio_second(name, waves)
        j1 = driver_throughput(name, wavs, 1)
        j2 = driver_throughput(name, wavs, 2)
        lo, hi = (o / cpu for o in OCTAVE_CPU_PER_AUDIO_S)
        print(f"| {name} | {cpu:.4f} | {lo:.0f}–{hi:.0f}× faster | {j1:.1f} | {j2:.1f} | "
              f"{j2 / j1:.2f} |")
    if args.skip_memory:
        return
    target_n = int(args.minutes * 60 * 16000)
    reps = int(np.ceil(target_n / sum(map(len, waves))))
    long_wave = np.concatenate(waves * reps)[:target_n]
    with tempfile.TemporaryDirectory() as tmp:
        long_wav = Path(tmp) / "long.wav"
        sf.write(long_wav, long_wave, 16000, subtype="PCM_16")
        base = memory_probe(long_wav, "-")
        print(f"\n# {args.minutes:g}-minute recording ({len(long_wave) / 16000:.0f} s, "
              f"{len(wavs)} real clips concatenated x{reps}); "
              f"decode-only process peak {base['peak_kib'] / 1024:.0f} MiB")
        print("| set | frames | peak RSS MiB | extraction's share MiB | peak / decode-only |")
        print("|---|---|---|---|---|")
        for name in sets:
            m = memory_probe(long_wav, name)
            extra = (m["peak_kib"] - base["peak_kib"]) / 1024
            print(f"| {name} | {m['shape'][0]}×{m['shape'][1]} | {m['peak_kib'] / 1024:.0f} | "
                  f"{extra:.0f} | {m['peak_kib'] / base['peak_kib']:.2f} |")


if __name__ == "__main__":
    main()
