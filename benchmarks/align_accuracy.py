"""Word-boundary accuracy of the aligners against the reference TextGrids of the MFA test corpus.

    python benchmarks/align_accuracy.py                       # pocketsphinx, default settings
    python benchmarks/align_accuracy.py --offsets 0,0.005,0.0075,0.01   # boundary offset sweep
    python benchmarks/align_accuracy.py --silprob 0.05,0.2,0.5,1           # silence prob. sweep
    python benchmarks/align_accuracy.py --combine-shift 0.005 --guard-ms 15 # two frame grids

For ``acoustic_corpus``, ``cold_corpus`` and ``cold_corpus3`` (transcript in ``lab/``, a
``words`` tier in ``textgrid/``) it aligns the clip, pairs our words with the reference words
(same spelling, longest common subsequence: the reference has a few words the transcript
lacks), and compares every start and end boundary: mean and median absolute error, and the
share within 10 / 20 / 50 ms. Prints one row per file and one for all boundaries together.
Errors are rounded to 0.1 ms before the thresholds are applied: both sides sit on a 10 ms
grid, and without rounding an error of exactly 20 ms often reads as 20.000000000000018 ms.

``--combine-shift S`` is the experiment "halve PocketSphinx's 10 ms quantisation": each clip
is aligned twice, once as is and once with its first ``S`` seconds dropped (the frame grid
moved by S, times moved back by S), and each boundary becomes the mean of the two where they
agree within ``--guard-ms`` (else the unshifted one is kept; if the shifted search fails, the
unshifted alignment is used as is).

``--pause-shifts START:END,...`` is the experiment "word-edge convention next to pauses": it
moves every word start that follows a pause by START ms and every word end before a pause by
END ms (same alignments, no re-alignment), prints the "all" row per pair, and a
leave-one-file-out check: the pair best on two files (20 ms share) applied to the third.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "2")

from cmbert_pipe.align import get_aligner, read_textgrid
from cmbert_pipe.audio import load_audio
from cmbert_pipe.corpus import single_clip
from cmbert_pipe.errors import AlignmentError
from cmbert_pipe.schema import SAMPLE_RATE, Alignment

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


def combine_shifted(base: Alignment, shifted: Alignment, shift_s: float,
                    guard_s: float) -> Alignment:
    """``base`` with each word boundary averaged with ``shifted``'s (times + ``shift_s``) where
    the two lie within ``guard_s`` of each other; order kept (a start never before the
    previous end)."""
    words, prev_end = [], 0.0
    for a, b in zip(base.words, shifted.words, strict=True):
        start, end = a.start_s, a.end_s
        if abs(b.start_s + shift_s - start) <= guard_s:
            start = (start + b.start_s + shift_s) / 2.0
        if abs(b.end_s + shift_s - end) <= guard_s:
            end = (end + b.end_s + shift_s) / 2.0
        start = min(max(start, prev_end), base.duration_s)
        end = min(max(end, start), base.duration_s)
        words.append(replace(a, start_s=round(start, 4), end_s=round(end, 4)))
        prev_end = end
    return replace(base, words=tuple(words))


def shift_pause_edges(ali: Alignment, start_ms: float, end_ms: float) -> Alignment:
    """Word starts after a pause moved by ``start_ms``, word ends before one by ``end_ms``
    (a pause: a gap between words, or audio before the first / after the last word);
    clipped so that words keep their order and stay inside the audio."""
    words = list(ali.words)
    out = []
    for i, w in enumerate(words):
        prev_end = words[i - 1].end_s if i else 0.0
        next_start = words[i + 1].start_s if i + 1 < len(words) else ali.duration_s
        start, end = w.start_s, w.end_s
        if start > prev_end:
            start = min(max(start + start_ms / 1000.0, prev_end), end)
        if end < next_start:
            end = max(min(end + end_ms / 1000.0, next_start), start)
        out.append(replace(w, start_s=round(start, 4), end_s=round(end, 4)))
    return replace(ali, words=tuple(out))


def within_20ms(err_s: np.ndarray) -> float:
    return float(100.0 * np.mean(np.round(err_s * 1000.0, 1) <= 20))


def row(name: str, err_s: np.ndarray) -> str:
    ms = np.round(err_s * 1000.0, 1)  # (n,) ms; rounding: see the module docstring
    within = [100.0 * np.mean(ms <= t) for t in (10, 20, 50)]
    return (
        f"| {name} | {len(ms)} | {ms.mean():.1f} | {np.median(ms):.1f} | "
        f"{within[0]:.1f} | {within[1]:.1f} | {within[2]:.1f} |"
    )


def pause_shift_report(pairs: dict[str, tuple[Alignment, Alignment]], spec: str) -> None:
    """The ``--pause-shifts`` experiment: one row per pair, then leave-one-file-out."""
    shifts = [tuple(float(v) for v in p.split(":")) for p in spec.split(",")]

    def err(names, shift) -> np.ndarray:
        return np.concatenate([boundary_errors_s(shift_pause_edges(pairs[n][0], *shift),
                                                 pairs[n][1]) for n in names])

    print("\npause-edge shifts (start ms : end ms), all files:")
    print("| shift | boundaries | mean ms | median ms | % ≤10 ms | % ≤20 ms | % ≤50 ms |")
    print("|---|---|---|---|---|---|---|")
    for shift in shifts:
        print(row(f"{shift[0]:+g} : {shift[1]:+g}", err(pairs, shift)))
    print("leave one file out (pair chosen on the other two by the 20 ms share):")
    for held in pairs:
        train = [n for n in pairs if n != held]
        best = max(shifts, key=lambda sh: (within_20ms(err(train, sh)), -abs(sh[0]) - abs(sh[1])))
        print(f"  {held}: chose {best[0]:+g} : {best[1]:+g}; held-out 20 ms share "
              f"{within_20ms(err([held], (0.0, 0.0))):.1f} % -> {within_20ms(err([held], best)):.1f} %")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--aligner", default="pocketsphinx")
    parser.add_argument("--offsets", default=None,
                        help="comma-separated boundary_offset_s values to compare (pocketsphinx)")
    parser.add_argument("--silprob", default=None,
                        help="comma-separated silprob values to compare (pocketsphinx)")
    parser.add_argument("--combine-shift", type=float, default=0.0,
                        help="also align on the frame grid shifted by this many s and average")
    parser.add_argument("--guard-ms", type=float, default=15.0,
                        help="--combine-shift: average only boundaries this close (ms)")
    parser.add_argument("--pause-shifts", default=None,
                        help="START:END ms pairs, comma-separated: move word edges at pauses")
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"MFA test data not found at {DATA}", file=sys.stderr)
        return 2
    runs: list[dict] = [{}]
    if args.offsets is not None:
        runs = [{"boundary_offset_s": float(x)} for x in args.offsets.split(",")]
    elif args.silprob is not None:
        runs = [{"silprob": float(x)} for x in args.silprob.split(",")]
    for options in runs:
        aligner = get_aligner(args.aligner, **options)
        settings = aligner.settings()
        print(f"\naligner: {args.aligner}, boundary_offset_s="
              f"{settings.get('boundary_offset_s', 'n/a')}, silprob={settings.get('silprob')}"
              + (f", combined with the grid shifted by {args.combine_shift} s "
                 f"(guard {args.guard_ms} ms)" if args.combine_shift else ""))
        print("| file | boundaries | mean ms | median ms | % ≤10 ms | % ≤20 ms | % ≤50 ms |")
        print("|---|---|---|---|---|---|---|")
        all_err = []
        pairs = {}  # file -> (our alignment, reference)
        audio_s = wall_s = cpu_s = 0.0
        for name in FILES:
            utt = single_clip(DATA / "wav" / f"{name}.wav", DATA / "lab" / f"{name}.lab")
            ref = read_textgrid(DATA / "textgrid" / f"{name}.TextGrid")
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                hyp = aligner.align(utt)
                if args.combine_shift:
                    wave = load_audio(utt.audio)
                    drop = round(args.combine_shift * SAMPLE_RATE)
                    try:
                        shifted = aligner.align(utt, wave=wave[drop:])
                    except AlignmentError as e:  # keep the unshifted alignment
                        print(f"({name}: shifted grid failed: {e})")
                    else:
                        hyp = combine_shifted(hyp, shifted, drop / SAMPLE_RATE,
                                              args.guard_ms / 1000.0)
            except Exception as e:  # report and go on: the table says which file failed
                print(f"| {name} | failed: {e} | | | | | |")
                continue
            wall_s += time.perf_counter() - t0
            cpu_s += time.process_time() - c0
            audio_s += hyp.duration_s
            pairs[name] = (hyp, ref)
            err = boundary_errors_s(hyp, ref)
            all_err.append(err)
            print(row(name, err))
        if all_err:
            print(row("**all**", np.concatenate(all_err)))
        print(f"(aligned {audio_s:.1f} s of audio in {wall_s:.1f} s wall, {cpu_s:.1f} CPU s)")
        if args.pause_shifts:
            pause_shift_report(pairs, args.pause_shifts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
