"""The PocketSphinx backend and align_corpus on real speech (the MFA test corpus)."""

from __future__ import annotations

import difflib
import json
import shutil

import numpy as np
import pytest

from cmbert_pipe.align import (
    ALIGNERS,
    align_corpus,
    alignment_path,
    get_aligner,
    load_alignment,
    read_textgrid,
)
from cmbert_pipe.corpus import single_clip
from cmbert_pipe.errors import AlignmentError, ConfigError
from cmbert_pipe.schema import Utterance


@pytest.fixture(scope="module")
def mfa(shared_data):
    return shared_data / "mfa-test"


@pytest.fixture(scope="module")
def aligner():
    return get_aligner("pocketsphinx")


def test_registry_and_settings():
    assert {"pocketsphinx", "mfa"} <= set(ALIGNERS)
    s = get_aligner("pocketsphinx", max_duration_s=60).settings()
    assert s["backend"] == "pocketsphinx" and s["max_duration_s"] == 60 and s["version"]
    assert s != get_aligner("pocketsphinx").settings()  # every parameter is in the key
    with pytest.raises(ConfigError, match="unknown aligner"):
        get_aligner("nope")
    with pytest.raises(ConfigError, match="pocketsphinx"):
        get_aligner("pocketsphinx", bogus=1)


def test_aligns_real_speech_words_in_order_with_phones(mfa, aligner):
    utt = single_clip(mfa / "wav" / "61-70968-0000.flac", mfa / "lab" / "61-70968-0000.lab")
    ali = aligner.align(utt)
    assert [w.word for w in ali.words] == utt.transcript.split()  # as written (upper case)
    starts = [w.start_s for w in ali.words]
    assert starts == sorted(starts) and all(w.end_s > w.start_s for w in ali.words)
    assert 0.0 < ali.words[0].start_s and ali.words[-1].end_s <= ali.duration_s
    assert ali.duration_s == pytest.approx(4.905, abs=0.01)
    assert {"HH", "IY"} <= {p.phone for p in ali.phones}
    assert ali.aligner.startswith("pocketsphinx-")


def test_boundaries_agree_with_mfa_reference(mfa, aligner):
    """acoustic_corpus against MFA's TextGrid: most boundaries within 20/50 ms."""
    utt = single_clip(mfa / "wav" / "acoustic_corpus.wav", mfa / "lab" / "acoustic_corpus.lab")
    ref = read_textgrid(mfa / "textgrid" / "acoustic_corpus.TextGrid")
    hyp = aligner.align(utt)
    ours, theirs = [w.word.lower() for w in hyp.words], [w.word for w in ref.words]
    errors = []
    for block in difflib.SequenceMatcher(a=ours, b=theirs, autojunk=False).get_matching_blocks():
        for k in range(block.size):
            h, r = hyp.words[block.a + k], ref.words[block.b + k]
            errors += [abs(h.start_s - r.start_s), abs(h.end_s - r.end_s)]
    errors = np.asarray(errors)
    assert len(errors) >= 100
    assert np.mean(errors <= 0.020) > 0.6 and np.mean(errors <= 0.050) > 0.85


def test_oov_words_numbers_and_annotations(tmp_path, mfa, aligner):
    utt = Utterance("weird", mfa / "wav" / "61-70968-0000.flac",
                    "[breath] HE BEGAN A CONFUSED COMPLAINT AGAINST THE WIZZARDOO WHO HAD "
                    "VANISHED BEHIND THE CURTAIN ON THE LEFT-HAND...")
    ali = aligner.align(utt)
    names = [w.word for w in ali.words]
    assert (len(names), names[0], names[8], names[-1]) == (18, "[breath]", "WIZZARDOO", "LEFT-HAND")
    assert ali.words[0].end_s <= ali.words[1].start_s


def test_mismatched_transcript_is_an_alignment_error(mfa, aligner):
    utt = single_clip(mfa / "wav" / "61-70968-0000.flac", mfa / "lab" / "multilingual_ipa_5.txt")
    with pytest.raises(AlignmentError, match="does not match the audio") as err:
        aligner.align(utt)
    assert err.value.path.endswith("61-70968-0000.flac")


def test_align_corpus_resumes_skips_and_forces(tmp_path, mfa, aligner):
    corpus = tmp_path / "corpus" / "spk one"
    corpus.mkdir(parents=True)
    shutil.copy(mfa / "wav" / "61-70968-0000.flac", corpus / "a.flac")
    shutil.copy(mfa / "wav" / "common_voice_en_22058266.mp3", corpus / "b.mp3")
    utts = [
        Utterance("spk one/a", corpus / "a.flac", (mfa / "lab" / "61-70968-0000.lab").read_text()),
        Utterance("spk one/b", corpus / "b.mp3", "Fire fox"),
    ]
    out = tmp_path / "out"
    seen = []
    summary = align_corpus(utts, out, aligner, on_progress=lambda *a: seen.append(a))
    assert (summary.total, summary.done, summary.skipped, summary.failures) == (2, 2, 0, ())
    assert seen[-1] == (2, 0, 2)
    assert alignment_path(out, "spk one/b") == out / "spk one" / "b.TextGrid"
    assert [w.word for w in load_alignment(out, utts[1]).words] == ["Fire", "fox"]
    assert json.loads((out / "summary.json").read_text())["done"] == 2
    mtime = alignment_path(out, "spk one/a").stat().st_mtime_ns

    again = align_corpus(utts, out, aligner)  # current: skipped, nothing rewritten
    assert (again.done, again.skipped) == (0, 2)
    assert alignment_path(out, "spk one/a").stat().st_mtime_ns == mtime

    changed = [utts[0], Utterance("spk one/b", corpus / "b.mp3", "Fire fox!")]
    partial = align_corpus(changed, out, aligner)  # transcript changed: only b is redone
    assert (partial.done, partial.skipped) == (1, 1)
    with pytest.raises(AlignmentError, match="stale"):
        load_alignment(out, utts[1])
    forced = align_corpus(changed, out, aligner, force=True)
    assert (forced.done, forced.skipped) == (2, 0)

    # a run killed between TextGrid and sidecar: the item is redone, not trusted
    alignment_path(out, "spk one/a").with_name("a.align.json").unlink()
    assert align_corpus(changed, out, aligner).done == 1


def test_align_corpus_in_two_processes(tmp_path, mfa):
    utts = [
        Utterance("x1", mfa / "wav" / "common_voice_en_22058264.mp3", "no"),
        Utterance("x2", mfa / "wav" / "common_voice_en_22058267.mp3", "six"),
        Utterance("x3", mfa / "wav" / "missing.wav", "gone"),
    ]
    summary = align_corpus(utts, tmp_path, get_aligner("pocketsphinx"), jobs=2)
    assert (summary.done, len(summary.failures)) == (2, 1)
    assert summary.failures[0].item_id == "x3" and "not found" in summary.failures[0].reason
    assert read_textgrid(tmp_path / "x2.TextGrid").words[0].word == "six"


def test_load_alignment_errors_name_the_file(tmp_path):
    utt = Utterance("nope", tmp_path / "nope.wav", "hello")
    with pytest.raises(AlignmentError, match="run `cmbert align` first") as err:
        load_alignment(tmp_path, utt)
    assert err.value.path.endswith("nope.TextGrid")
    with pytest.raises(AlignmentError, match="safe relative path"):
        alignment_path(tmp_path, "../escape")
