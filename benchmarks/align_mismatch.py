"""Right versus wrong transcripts on RAVDESS: how many right ones are kept (and by which method),
how many wrong ones are refused.

    python benchmarks/align_mismatch.py              # every 6th clip of actors 01-12 (120 clips)
    python benchmarks/align_mismatch.py --every 1    # all 720

Each clip is aligned twice: with its own statement and with the other one ("Kids are talking
by the door" / "Dogs are sitting by the door": four of six words shared, the hardest "other
sentence" there is). Rows are split by voice: raised (median F0 >= the backend's
``raised_voice_f0_hz``) or not, because per-word fit is not used as evidence in raised voices.
Writes ``results/align_mismatch.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results import markdown_table, write_result  # noqa: E402
from align_speed import ravdess_utterances  # noqa: E402

from cmbert_pipe.align import get_aligner  # noqa: E402
from cmbert_pipe.align.quality import median_f0_hz, speech_segments  # noqa: E402
from cmbert_pipe.audio import load_audio  # noqa: E402
from cmbert_pipe.datasets.ravdess import STATEMENTS  # noqa: E402
from cmbert_pipe.errors import CmbertError  # noqa: E402
from cmbert_pipe.schema import Utterance  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=int, default=6, help="use every N-th clip")
    args = parser.parse_args()
    aligner = get_aligner("pocketsphinx")
    raised_hz = aligner.config.raised_voice_f0_hz
    counts: dict[tuple[str, str, str], int] = {}
    for utt in ravdess_utterances(args.every):
        wave = load_audio(utt.audio)
        voice = "raised" if median_f0_hz(wave, speech_segments(wave)) >= raised_hz else "normal"
        own = int(utt.id.split("-")[4])
        for kind, text in (("right", STATEMENTS[own]), ("wrong", STATEMENTS[3 - own])):
            try:
                outcome = aligner.align(Utterance(utt.id, utt.audio, text), wave=wave).method
            except CmbertError:
                outcome = "refused"
            counts[(kind, voice, outcome)] = counts.get((kind, voice, outcome), 0) + 1
    rows, data = [], {}
    for kind in ("right", "wrong"):
        for voice in ("normal", "raised"):
            got = {o: n for (k, v, o), n in counts.items() if k == kind and v == voice}
            total = sum(got.values())
            if not total:
                continue
            refused = got.get("refused", 0)
            kept = ", ".join(f"{o} {n}" for o, n in sorted(got.items()) if o != "refused")
            rows.append([kind, voice, total, kept or "-", refused,
                         f"{100.0 * refused / total:.1f}"])
            data[f"{kind}/{voice}"] = got
    table = markdown_table(["transcript", f"voice (F0 ≥ {raised_hz:.0f} Hz: raised)", "clips",
                            "kept (method n)", "refused", "% refused"], rows)
    body = ("Each RAVDESS clip aligned with its own statement (right) and with the other one "
            "(wrong: four of six words shared).\n\n" + table
            + "\nA right transcript refused is a lost clip; a wrong one kept is a wrong "
              "alignment (its quality is lower: filter with `--min-align-quality`).\n")
    print(body)
    path = write_result("align_mismatch", body, data,
                        title="Right vs wrong transcripts (RAVDESS)")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
