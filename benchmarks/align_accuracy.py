"""Word-boundary accuracy of the aligners against the reference TextGrids of the MFA test corpus.

    python benchmarks/align_accuracy.py                       # pocketsphinx, default settings
    python benchmarks/align_accuracy.py --offsets 0,0.005,0.0075,0.01   # boundary offset sweep

For ``acoustic_corpus``, ``cold_corpus`` and ``cold_corpus3`` (transcript in ``lab/``, a
``words`` tier in ``textgrid/``) it aligns the clip, pairs our words with the reference words
(same spelling, longest common subsequence: the reference has a few words the transcript
lacks), and compares every start and end boundary: mean and median absolute error, and the
share within 10 / 20 / 50 ms. Prints one row per file and one for all boundaries together.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "2")

from cmbert_pipe.align import get_aligner, read_textgrid
from cmbert_pipe.corpus import single_clip
from cmbert_pipe.schema import Alignment

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CMBERT_SHARED_DATA", REPO.parent / "shared" / "data")) / "mfa-test"
FILES = ("acoustic_corpus", "cold_corpus", "cold_corpus3")


def boundary_errors_s(hyp: Alignment, ref: Alignment) -> np.ndarray:
    """|hyp - ref| in seconds for the start and end of every word present in both, (2 * n,)."""
    ours = [w.word.lower() for w in hyp.words]
    theirs = [w.word.lower() for w in ref.words]
    errors: list[float] = []
    matcher = difflib.SequenceMatcher(a=ours, b=theirs, autojunk=False)
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            h, r = hyp.words[block.a + k], ref.words[block.b + k]
            errors += [abs(h.start_s - r.start_s), abs(h.end_s - r.end_s)]
    return np.asarray(errors)


def row(name: str, err_s: np.ndarray) -> str:
    ms = err_s * 1000.0
    within = [100.0 * np.mean(ms <= t) for t in (10, 20, 50)]
    return (
        f"| {name} | {len(ms)} | {ms.mean():.1f} | {np.median(ms):.1f} | "
        f"{within[0]:.1f} | {within[1]:.1f} | {within[2]:.1f} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--aligner", default="pocketsphinx")
    parser.add_argument("--offsets", default=None,
                        help="comma-separated boundary_offset_s values to compare (pocketsphinx)")
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"MFA test data not found at {DATA}", file=sys.stderr)
        return 2
    offsets = [None] if args.offsets is None else [float(x) for x in args.offsets.split(",")]
    for offset in offsets:
        options = {} if offset is None else {"boundary_offset_s": offset}
        aligner = get_aligner(args.aligner, **options)
        settings = aligner.settings()
        print(f"\naligner: {args.aligner}, boundary_offset_s="
              f"{settings.get('boundary_offset_s', 'n/a')}")
        print("| file | boundaries | mean ms | median ms | % ≤10 ms | % ≤20 ms | % ≤50 ms |")
        print("|---|---|---|---|---|---|---|")
        all_err = []
        audio_s = wall_s = 0.0
        for name in FILES:
            utt = single_clip(DATA / "wav" / f"{name}.wav", DATA / "lab" / f"{name}.lab")
            ref = read_textgrid(DATA / "textgrid" / f"{name}.TextGrid")
            t0 = time.perf_counter()
            try:
                hyp = aligner.align(utt)
            except Exception as e:  # report and go on: the table says which file failed
                print(f"| {name} | failed: {e} | | | | | |")
                continue
            wall_s += time.perf_counter() - t0
            audio_s += hyp.duration_s
            err = boundary_errors_s(hyp, ref)
            all_err.append(err)
            print(row(name, err))
        if all_err:
            print(row("**all**", np.concatenate(all_err)))
        print(f"(aligned {audio_s:.1f} s of audio in {wall_s:.1f} s wall)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
