"""Right versus wrong transcripts on RAVDESS: how many right ones are kept (and by which method),
how many wrong ones are refused.

    python benchmarks/align_mismatch.py              # every 6th clip of actors 01-12 (120 clips)
    python benchmarks/align_mismatch.py --every 1    # all 720

Each clip is aligned twice: with its own statement and with the other one ("Kids are talking
by the door" / "Dogs are sitting by the door": four of six words shared, the hardest "other
sentence" there is). Rows are split by voice: raised (median F0 >= the backend's
``raised_voice_f0_hz``) or not, because per-word fit is not used as evidence in raised voices.

Then the poor-word refusal under other rules, from each path's per-word evidence (the backend's
``word_evidence``: frames, fit, phones of every word), at the same limit (``max_poor_share``):
the default (poorly fitting words hold more than the limit of the words' time *and* of the
transcript's phones), the rule before it (of the words' time alone), phones alone, and two
weightings by word type: function words (:data:`FUNCTION_WORDS`, closed-class words, reduced in
fluent speech) left out, or at half weight. Only clips that reach that check can differ (normal
voice, a full path of sufficient quality); the others keep their outcome.

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
#: closed-class English words (articles, auxiliaries, prepositions, pronouns, conjunctions)
FUNCTION_WORDS = frozenset(
    "a an the am is are was were be been being do does did have has had will would shall should "
    "can could may might must of to in on at by for from with about as into onto over under "
    "up down out off than then and or but nor so if that this these those it its i me my we us "
    "our you your he him his she her they them their there here not no".split())


def _share(evidence, min_quality: float, weight) -> float:
    """Weighted share of the poorly fitting words; ``weight(key, frames, phones)``."""
    total = sum(weight(k, n, p) for k, n, _, p in evidence)
    poor = sum(weight(k, n, p) for k, n, q, p in evidence if q < min_quality)
    return poor / max(total, 1e-9)


RULES = {  # name -> (evidence, min word quality) -> share compared with the limit
    "time and phones (default)": lambda ev, m: min(_share(ev, m, lambda k, n, p: n),
                                                   _share(ev, m, lambda k, n, p: p)),
    "words' time alone (before)": lambda ev, m: _share(ev, m, lambda k, n, p: n),
    "phones alone": lambda ev, m: _share(ev, m, lambda k, n, p: p),
    "time, function words left out": lambda ev, m: _share(
        ev, m, lambda k, n, p: 0.0 if k in FUNCTION_WORDS else n),
    "time, function words at half weight": lambda ev, m: _share(
        ev, m, lambda k, n, p: 0.5 * n if k in FUNCTION_WORDS else n),
}
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
        kept_rel = [r for r in refused
                    if r["speaker"] in peers and len(peers[r["speaker"]]) >= MIN_PEERS
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
    table = markdown_table(["transcript", f"refused: > {max_share:.0%} of the words' time "
                            "fitting poorly", "kept by the speaker-relative rule"], rows)
    return (f"\n### Considered, not adopted: speaker-relative evidence\n\n{table}\n"
            f"Right transcripts kept today reach a modified z-score of "
            f"{min(right_z, default=float('nan')):.2f} against their speaker's other clips, so a "
            f"quality outlier is no proof of a wrong transcript; the rule would keep the wrong "
            f"transcripts above (of {n_wrong}) to save the right ones. The refusal stays.\n")


def _rules_table(judged, counts, min_q: float, limit: float, data) -> str:
    """Refusals in normal voices under each of :data:`RULES` (markdown)."""
    fixed = {kind: counts.get((kind, "normal", "refused"), 0)
             - sum(1 for j in judged if j["kind"] == kind
                   and RULES["time and phones (default)"](j["evidence"], min_q) > limit)
             for kind in ("right", "wrong")}  # refused before the poor-share check
    totals = {kind: sum(n for (k, v, _), n in counts.items() if k == kind and v == "normal")
              for kind in ("right", "wrong")}
    rows = []
    for name, rule in RULES.items():
        refused = {kind: [j["id"] for j in judged if j["kind"] == kind
                          and rule(j["evidence"], min_q) > limit] for kind in ("right", "wrong")}
        n_right, n_wrong = (fixed[k] + len(refused[k]) for k in ("right", "wrong"))
        rows.append([name, f"{totals['right'] - n_right} of {totals['right']}",
                     ", ".join(sorted(refused["right"])) or "-",
                     f"{n_wrong} of {totals['wrong']} "
                     f"({100.0 * n_wrong / max(totals['wrong'], 1):.1f} %)"])
        data[f"rules/{name}"] = {"right_refused": refused["right"], "wrong_refused": n_wrong}
    return (f"\n### The poor-word refusal under other rules (normal voices, limit {limit:.0%})\n\n"
            + markdown_table(["share of the poorly fitting words", "right kept",
                              "right refused by it", "wrong refused"], rows)
            + "\nRaised voices are not judged on word fit, so these rules change nothing there.\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=int, default=6, help="use every N-th clip")
    args = parser.parse_args()
    aligner = get_aligner("pocketsphinx")
    raised_hz = aligner.config.raised_voice_f0_hz
    min_q, limit = aligner.config.min_word_quality, aligner.config.max_poor_share
    counts: dict[tuple[str, str, str], int] = {}
    peers: dict[str, list[float]] = {}  # speaker -> qualities of right transcripts, full path
    share_refused: list[dict] = []  # refused by the poor-share rule: their evidence
    judged: list[dict] = []  # clips that reached the poor-share check: their evidence
    for utt in ravdess_utterances(args.every):
        wave = load_audio(utt.audio)
        voice = "raised" if median_f0_hz(wave, speech_segments(wave)) >= raised_hz else "normal"
        own = int(utt.id.split("-")[4])
        for kind, text in (("right", STATEMENTS[own]), ("wrong", STATEMENTS[3 - own])):
            clip = Utterance(utt.id, utt.audio, text)
            evidence = None
            try:
                ali = aligner.align(clip, wave=wave)
                outcome = ali.method
                if kind == "right" and ali.method in FULL_PATH:
                    peers.setdefault(utt.speaker, []).append(ali.quality)
                if ali.method in FULL_PATH and voice == "normal":
                    evidence = aligner.word_evidence(clip, wave)
            except CmbertError as e:
                outcome = "refused"
                if "fit the sound poorly" in e.reason:
                    evidence = aligner.word_evidence(clip, wave)
                    share = RULES["time and phones (default)"](evidence[2], min_q)
                    share_refused.append({"id": utt.id, "speaker": utt.speaker, "kind": kind,
                                          "quality": evidence[1], "share": share})
            if evidence is not None:
                judged.append({"id": utt.id, "kind": kind, "evidence": evidence[2]})
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
    body += _rules_table(judged, counts, min_q, limit, data)
    body += _speaker_relative(peers, share_refused, counts, data, aligner.config.max_poor_share)
    print(body)
    path = write_result("align_mismatch", body, data,
                        title="Right vs wrong transcripts (RAVDESS)")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
