"""Right versus wrong transcripts on RAVDESS: how many right ones are kept (and by which method),
how many wrong ones are refused.

    python benchmarks/align_mismatch.py              # every 6th clip of actors 01-12 (120 clips)
    python benchmarks/align_mismatch.py --every 1    # all 720

Each clip is aligned twice: with its own statement and with the other one ("Kids are talking
by the door" / "Dogs are sitting by the door": four of six words shared, the hardest "other
sentence" there is). Rows are split by voice: raised (median F0 >= the backend's
``raised_voice_f0_hz``) or not, because per-word fit is not used as evidence in raised voices.

Also the refusal as it was before ``poor_share_of_phones`` (the poorly fitting words' share of
the words' time alone, not also of the transcript's phones), on the same clips in the same run:
only a clip the default keeps by a full path can differ (the rule before refuses a superset),
so only those are aligned again with it.

Then a corpus-level rule that was considered, and what it would do on the same clips: a clip
refused because too much of its words' time fits poorly is kept when its quality is no outlier
among the speaker's other clips (those aligned with their right statement by a full path):
modified z-score ``0.6745 (q - median) / MAD`` of at least -3.5, the outlier limit of
Iglewicz & Hoaglin (1993, "How to detect and handle outliers"). Also the single-clip
alternative: the poor-share limit raised just enough to keep every right transcript.
Writes ``results/align_mismatch.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from _results import markdown_table, write_result  # noqa: E402
from align_speed import ravdess_utterances  # noqa: E402

from cmbert_pipe.align import get_aligner  # noqa: E402
from cmbert_pipe.align.quality import median_f0_hz, speech_segments  # noqa: E402
from cmbert_pipe.audio import load_audio  # noqa: E402
from cmbert_pipe.datasets.ravdess import STATEMENTS  # noqa: E402
from cmbert_pipe.errors import CmbertError  # noqa: E402
from cmbert_pipe.schema import Utterance  # noqa: E402


FULL_PATH = ("viterbi", "viterbi-wide", "garbage")
OUTLIER_Z = -3.5  # Iglewicz & Hoaglin's modified z-score limit
MIN_PEERS = 5  # other clips of the speaker the rule needs


def modified_z(value: float, sample: list[float]) -> float:
    med = float(np.median(sample))
    mad = float(np.median(np.abs(np.asarray(sample) - med)))
    return 0.6745 * (value - med) / max(mad, 1e-9)


def _speaker_relative(peers, share_refused, counts, data, max_share) -> str:
    """The considered rule's effect, and the raised single-clip limit's, as markdown."""
    right_z = []  # each right clip kept by a full path against the speaker's other ones
    for qualities in (q for q in peers.values() if len(q) > MIN_PEERS):
        right_z += [modified_z(q, qualities[:i] + qualities[i + 1:])
                    for i, q in enumerate(qualities)]
    rows = []
    for kind in ("right", "wrong"):
        refused = [r for r in share_refused if r["kind"] == kind]
        kept_rel = [r for r in refused if r["speaker"] in peers and len(peers[r["speaker"]]) >= MIN_PEERS
                    and modified_z(r["quality"], peers[r["speaker"]]) >= OUTLIER_Z]
        rows.append([kind, len(refused), len(kept_rel)])
        data[f"share_refused/{kind}"] = len(refused)
        data[f"speaker_relative_kept/{kind}"] = len(kept_rel)
    right_shares = [r["share"] for r in share_refused if r["kind"] == "right"]
    if right_shares:
        limit = max(right_shares)
        wrong_let = sum(1 for r in share_refused if r["kind"] == "wrong" and r["share"] <= limit)
        rows.append(["wrong, kept by a poor-share limit of "
                     f"{limit:.2f} (keeps every right one)", "", wrong_let])
        data["raised_limit"] = {"max_poor_share": limit, "wrong_kept": wrong_let}
    n_wrong = sum(n for (k, _, _), n in counts.items() if k == "wrong")
    data["right_kept_modified_z_min"] = float(min(right_z)) if right_z else None
    table = markdown_table(["transcript", f"refused: poorly fitting words > {max_share:.0%} "
                            "(time and phones)", "kept by the speaker-relative rule"], rows)
    return (f"\n### Considered, not adopted: speaker-relative evidence\n\n{table}\n"
            f"Right transcripts kept today reach a modified z-score of "
            f"{min(right_z, default=float('nan')):.2f} against their speaker's other clips, so a quality outlier "
            f"is no proof of a wrong transcript; the rule would keep the wrong transcripts "
            f"above (of {n_wrong}) to save the right ones. The refusal stays.\n")


def _refused_ids(counts_ids, kind: str, voice: str) -> set[str]:
    return counts_ids.get((kind, voice), set())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=int, default=6, help="use every N-th clip")
    args = parser.parse_args()
    aligner = get_aligner("pocketsphinx")
    before = get_aligner("pocketsphinx", poor_share_of_phones=False)
    before_refused: dict[tuple[str, str], list[str]] = {}  # (kind, voice) -> ids
    raised_hz = aligner.config.raised_voice_f0_hz
    counts: dict[tuple[str, str, str], int] = {}
    peers: dict[str, list[float]] = {}  # speaker -> qualities of right transcripts, full path
    share_refused: list[dict] = []  # refused by the poor-share rule: their evidence
    counts_ids: dict[tuple[str, str], set[str]] = {}  # (kind, voice) -> ids refused
    for utt in ravdess_utterances(args.every):
        wave = load_audio(utt.audio)
        voice = "raised" if median_f0_hz(wave, speech_segments(wave)) >= raised_hz else "normal"
        own = int(utt.id.split("-")[4])
        for kind, text in (("right", STATEMENTS[own]), ("wrong", STATEMENTS[3 - own])):
            clip = Utterance(utt.id, utt.audio, text)
            try:
                ali = aligner.align(clip, wave=wave)
                outcome = ali.method
                if kind == "right" and ali.method in FULL_PATH:
                    peers.setdefault(utt.speaker, []).append(ali.quality)
                if ali.method in FULL_PATH and voice == "normal":
                    try:
                        before.align(clip, wave=wave)
                    except CmbertError:
                        before_refused.setdefault((kind, voice), []).append(utt.id)
            except CmbertError as e:
                outcome = "refused"
                before_refused.setdefault((kind, voice), []).append(utt.id)
                if "fit the sound poorly" in e.reason:
                    _, quality, share = aligner.path_evidence(clip, wave)
                    share_refused.append({"id": utt.id, "speaker": utt.speaker, "kind": kind,
                                          "quality": quality, "share": share})
            counts[(kind, voice, outcome)] = counts.get((kind, voice, outcome), 0) + 1
            if outcome == "refused":
                counts_ids.setdefault((kind, voice), set()).add(utt.id)
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
    rows_before = []
    for kind in ("right", "wrong"):
        for voice in ("normal", "raised"):
            total = sum(n for (k, v, _), n in counts.items() if k == kind and v == voice)
            if not total:
                continue
            now = counts.get((kind, voice, "refused"), 0)
            was = before_refused.get((kind, voice), [])
            rows_before.append([kind, voice, total, now, len(was),
                                ", ".join(sorted(set(was) - _refused_ids(counts_ids, kind, voice)))
                                if kind == "right" else ""])
            data[f"{kind}/{voice}/refused_before"] = len(was)
    body += ("\n### The refusal before: the words' time alone\n\n"
             "Refused by the default (poorly fitting words hold more than "
             f"{aligner.config.max_poor_share:.0%} of the words' time *and* of the transcript's "
             "phones), and by the rule before (of the words' time alone):\n\n"
             + markdown_table(["transcript", "voice", "clips", "refused (default)",
                               "refused (time alone)", "right ones only the rule before refuses"],
                              rows_before))
    body += _speaker_relative(peers, share_refused, counts, data, aligner.config.max_poor_share)
    print(body)
    path = write_result("align_mismatch", body, data,
                        title="Right vs wrong transcripts (RAVDESS)")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
