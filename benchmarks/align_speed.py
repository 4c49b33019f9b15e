"""Alignment throughput: seconds of audio aligned per second of wall time, --jobs 1 vs 2.

    python benchmarks/align_speed.py            # English clips of the MFA test corpus
    python benchmarks/align_speed.py --repeat 3

Runs :func:`cmbert_pipe.align.align_corpus` (decode, align, write TextGrids: what
``cmbert align`` does) over the English clips of ``../shared/data/mfa-test`` into fresh
temporary folders, with ``force`` so nothing is skipped, first with one worker process and
then with two. Prints audio seconds per wall second for each, and the ratio of the two in
this same process. Worker start-up (loading the acoustic model once per process) is included.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from cmbert_pipe.align import align_corpus, get_aligner
from cmbert_pipe.audio import load_audio
from cmbert_pipe.corpus import discover
from cmbert_pipe.schema import SAMPLE_RATE

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CMBERT_SHARED_DATA", REPO.parent / "shared" / "data")) / "mfa-test"
ENGLISH = (
    "61-70968-0000", "acoustic_corpus", "cold_corpus", "cold_corpus3", "multilingual_ipa",
    "multilingual_ipa_2", "multilingual_ipa_3", "multilingual_ipa_5", "multilingual_ipa_us",
    "multilingual_ipa_us_3", "multilingual_ipa_us_5", "common_voice_en_22058264",
    "common_voice_en_22058266", "common_voice_en_22058267",
)


def _cpu_s() -> float:
    """User + system CPU seconds of this process and of its finished worker processes."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="runs per setting (best is kept)")
    args = parser.parse_args()
    scan = discover(DATA / "wav", transcripts=DATA / "lab")
    utts = [u for u in scan.utterances if u.id in ENGLISH]
    audio_s = sum(len(load_audio(u.audio)) for u in utts) / SAMPLE_RATE
    aligner = get_aligner("pocketsphinx")
    print(f"{len(utts)} clips, {audio_s:.1f} s of audio, {os.cpu_count()} CPU(s) visible")
    print("| jobs | wall s | audio s / wall s | CPU s | audio s / CPU s | aligned | failed |")
    print("|---|---|---|---|---|---|---|")
    speeds = {}
    for jobs in (1, 2):
        best = best_cpu = None
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as out:
                cpu0 = _cpu_s()
                t0 = time.perf_counter()
                summary = align_corpus(utts, out, aligner, jobs=jobs, force=True)
                wall = time.perf_counter() - t0
                cpu = _cpu_s() - cpu0
            best = wall if best is None else min(best, wall)
            best_cpu = cpu if best_cpu is None else min(best_cpu, cpu)
        speeds[jobs] = audio_s / best
        print(f"| {jobs} | {best:.1f} | {speeds[jobs]:.1f} | {best_cpu:.1f} | "
              f"{audio_s / best_cpu:.1f} | {summary.done} | {len(summary.failures)} |")
    print(f"jobs 2 / jobs 1 throughput ratio: {speeds[2] / speeds[1]:.2f} "
          f"(load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
