"""Alignment throughput: seconds of audio aligned per CPU second, decoding and writing included,
with the fallbacks where they are needed (and how often that is).

    python benchmarks/align_speed.py                  # RAVDESS actors 01-12 (720 clips)
    python benchmarks/align_speed.py --every 4        # every 4th clip (quicker)

Runs :func:`cmbert_pipe.align.align_corpus` (decode, check, align, write TextGrids and
sidecars: what ``cmbert align`` does) with one worker process over the clips of
``../shared/data/ravdess-dev`` (transcripts from the RAVDESS file names) into a fresh
temporary folder, ``force`` so nothing is skipped. CPU time is user + system of this process
and its workers, so it is not inflated by other load on the machine the way wall time is.
Then it re-aligns, in this same process, the clips that needed a fallback, to give the CPU
share the fallbacks cost, and times the decoder reuse: every 6th clip aligned with a fresh
decoder per clip (the reference: what the backend did before it kept one per worker) and with
the kept one, alternating by clip so load hits both alike. Writes ``results/align_speed.md``
and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results import markdown_table, write_result  # noqa: E402

from cmbert_pipe.align import align_corpus, get_aligner, pocketsphinx_backend  # noqa: E402
from cmbert_pipe.audio import load_audio  # noqa: E402
from cmbert_pipe.datasets.ravdess import STATEMENTS  # noqa: E402
from cmbert_pipe.errors import CmbertError  # noqa: E402
from cmbert_pipe.schema import SAMPLE_RATE, Utterance  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CMBERT_SHARED_DATA", REPO.parent / "shared" / "data"))
GOAL = 30.0  # audio s per CPU s


def _cpu_s() -> float:
    """User + system CPU seconds of this process and of its finished worker processes."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def ravdess_utterances(every: int) -> list[Utterance]:
    files = sorted((DATA / "ravdess-dev").glob("Actor_*/03-01-*.flac"))[::every]
    return [Utterance(f.stem, f, STATEMENTS[int(f.stem.split("-")[4])],
                      speaker=f.stem.split("-")[6]) for f in files]


def _reuse_ratio(aligner, utts: list[Utterance]) -> tuple[float, float]:
    """(CPU s with a fresh decoder per clip, CPU s with the kept one) over ``utts``, each clip
    aligned both ways in turn (audio decoded once beforehand, outside the timing)."""
    waves = [load_audio(u.audio) for u in utts]
    kept = pocketsphinx_backend._reused_decoder
    totals = {"fresh": 0.0, "kept": 0.0}
    try:
        for utt, wave in zip(utts, waves, strict=True):
            for mode in ("fresh", "kept"):
                pocketsphinx_backend._reused_decoder = (
                    pocketsphinx_backend._decoder if mode == "fresh" else kept)
                c0 = time.process_time()
                try:
                    aligner.align(utt, wave=wave)
                except CmbertError:
                    pass
                totals[mode] += time.process_time() - c0
    finally:
        pocketsphinx_backend._reused_decoder = kept
    return totals["fresh"], totals["kept"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=int, default=1, help="use every N-th clip")
    args = parser.parse_args()
    utts = ravdess_utterances(args.every)
    if not utts:
        print(f"RAVDESS clips not found under {DATA / 'ravdess-dev'}", file=sys.stderr)
        return 2
    audio_s = sum(len(load_audio(u.audio)) for u in utts) / SAMPLE_RATE
    aligner = get_aligner("pocketsphinx")
    aligner.align(utts[0])  # first-call costs (model files into the page cache) out of the run
    with tempfile.TemporaryDirectory() as out:
        cpu0, t0 = _cpu_s(), time.perf_counter()
        summary = align_corpus(utts, out, aligner, jobs=1, force=True)
        cpu_s, wall_s = _cpu_s() - cpu0, time.perf_counter() - t0
        methods = json.loads((Path(out) / "summary.json").read_text())["methods"]
        fallback_ids = []
        for u in utts:
            side = Path(out) / f"{u.id}.align.json"
            if side.is_file() and json.loads(side.read_text()).get("method") != "viterbi":
                fallback_ids.append(u.id)
    fallback_ids += [f.item_id for f in summary.failures]  # refusals run every step too
    by_id = {u.id: u for u in utts}
    c0 = time.process_time()
    for i in fallback_ids:
        try:
            aligner.align(by_id[i])
        except CmbertError:
            pass
    fallback_cpu_s = time.process_time() - c0
    speed = audio_s / cpu_s
    fresh_s, kept_s = _reuse_ratio(aligner, utts[::6])
    rows = [[f"RAVDESS actors 01-12{'' if args.every == 1 else f' (every {args.every}th)'}",
             len(utts), f"{audio_s:.0f}", f"{cpu_s:.1f}", f"{speed:.1f}", f"{wall_s:.0f}",
             ", ".join(f"{m} {n}" for m, n in methods.items()), len(summary.failures)]]
    table = markdown_table(["clips", "n", "audio s", "CPU s", "audio s / CPU s", "wall s",
                            "methods", "refused"], rows)
    share = 100.0 * fallback_cpu_s / cpu_s
    body = (table + f"\nGoal: ≥ {GOAL:.0f} s of audio per CPU second, I/O included: "
            f"{'met' if speed >= GOAL else 'not met'} ({speed:.1f}).\n\n"
            f"Fallbacks (any method after `viterbi`, and refusals, which run every step) "
            f"ran on {len(fallback_ids)} of {len(utts)} clips "
            f"({100.0 * len(fallback_ids) / len(utts):.1f} %) and cost {fallback_cpu_s:.1f} "
            f"CPU s ({share:.1f} % of the run), measured by re-aligning those clips in the same "
            "process.\n\n"
            f"Decoder kept per worker vs a fresh one per clip (every 6th clip, "
            f"{len(utts[::6])} clips, each aligned both ways in this process): "
            f"{kept_s:.1f} vs {fresh_s:.1f} CPU s, {fresh_s / kept_s:.2f}× the speed; the "
            "alignments are identical (tests/test_align_determinism.py).\n")
    print(body)
    path = write_result("align_speed", body, {
        "clips": len(utts), "audio_s": audio_s, "cpu_s": cpu_s, "wall_s": wall_s,
        "audio_s_per_cpu_s": speed, "methods": methods, "refused": len(summary.failures),
        "fallback_clips": len(fallback_ids), "fallback_cpu_s": fallback_cpu_s,
        "reuse_clips": len(utts[::6]), "fresh_decoder_cpu_s": fresh_s,
        "kept_decoder_cpu_s": kept_s},
        title="Alignment speed (pocketsphinx, one worker)")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
