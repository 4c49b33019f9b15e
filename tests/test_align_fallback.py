"""Fallbacks, method and quality of the PocketSphinx backend, and refusal of wrong transcripts,
on real speech (RAVDESS clips, the MFA test corpus) and on synthesized non-speech."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from cmbert_pipe.align import align_corpus, get_aligner, load_alignment
from cmbert_pipe.align.quality import (
    check_fits,
    fill_unplaced,
    median_f0_hz,
    place_by_phones,
    quality_from_fit,
    speech_segments,
)
from cmbert_pipe.audio import load_audio
from cmbert_pipe.corpus import single_clip
from cmbert_pipe.errors import AlignmentError, TranscriptError
from cmbert_pipe.schema import SAMPLE_RATE, Utterance

KIDS = "Kids are talking by the door"
DOGS = "Dogs are sitting by the door"


@pytest.fixture(scope="module")
def ravdess(shared_data):
    return shared_data / "ravdess-dev"


@pytest.fixture(scope="module")
def aligner():
    return get_aligner("pocketsphinx", max_duration_s=900)


def _clip(ravdess, name: str):
    return ravdess / f"Actor_{name[-2:]}" / f"{name}.flac"


def _harmonic(f0_hz: float, seconds: float) -> np.ndarray:
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return sum(np.sin(2 * np.pi * k * f0_hz * t) / k for k in range(1, 6)).astype(np.float32)


# -- evidence helpers ---------------------------------------------------------------------------
def test_place_by_phones_skips_pauses_and_follows_phone_counts():
    spans = place_by_phones([2, 2, 4], [(1.0, 2.0), (3.0, 4.0)])
    assert spans[0] == (1.0, 1.5) and spans[1] == (1.5, 2.0) and spans[2] == (3.0, 4.0)


def test_fill_unplaced_shares_the_gap_evenly_or_by_phones_over_voiced_time():
    spans = [(0.5, 0.9), None, None, (1.6, 2.0), None]
    assert fill_unplaced(spans, 0.0, 2.6) == [(0.5, 0.9), (0.9, 1.25), (1.25, 1.6),
                                              (1.6, 2.0), (2.0, 2.6)]
    # by phones over the voiced part of the gap (1.0-1.4 s): 1 phone then 3 phones
    filled = fill_unplaced([(0.5, 0.9), None, None, (1.6, 2.0)], 0.0, 2.0, [2, 1, 3, 2],
                           [(0.4, 0.9), (1.0, 1.4), (1.6, 2.0)])
    assert filled[1:3] == [(1.0, 1.1), (1.1, 1.4)]
    assert fill_unplaced([None, (1.0, 2.0)], 0.2, 3.0) == [(0.2, 1.0), (1.0, 2.0)]


def test_check_fits_names_the_evidence():
    assert check_fits(20, 3.5, 2.0) is None
    assert "no speech" in check_fits(20, 3.5, 0.0)
    assert "too long for the audio" in check_fits(200, 3.0, 2.5)
    assert "far more than" in check_fits(11, 600.0, 440.0)
    assert quality_from_fit(0.0) == 1.0 and 0.0 < quality_from_fit(-4.0) < quality_from_fit(-1.0)


def test_speech_detector_and_pitch_on_synthetic_and_real_audio(ravdess):
    silence = np.random.default_rng(0).standard_normal(3 * SAMPLE_RATE).astype(np.float32) * 1e-3
    assert speech_segments(silence) == ()
    quiet = silence[:SAMPLE_RATE]
    burst = np.concatenate([quiet, _harmonic(200.0, 1.0) * 0.3, quiet])
    (seg,) = speech_segments(burst)
    assert seg[0] == pytest.approx(1.0, abs=0.03) and seg[1] == pytest.approx(2.0, abs=0.03)
    assert median_f0_hz(burst, (seg,)) == pytest.approx(200.0, rel=0.03)
    wave = load_audio(_clip(ravdess, "03-01-01-01-01-01-01"))
    segments = speech_segments(wave)
    assert segments and 0.5 < segments[0][0] and segments[-1][1] < wave.shape[0] / SAMPLE_RATE
    assert 80.0 < median_f0_hz(wave, segments) < 300.0  # an adult male speaking


# -- right transcripts are never lost -----------------------------------------------------------
def test_ordinary_clip_is_viterbi_with_a_quality(ravdess, aligner):
    path = _clip(ravdess, "03-01-01-01-01-01-01")
    ali = aligner.align(Utterance("a", path, KIDS))
    assert ali.method == "viterbi" and 0.3 < ali.quality <= 1.0
    assert [w.word for w in ali.words] == KIDS.split() and ali.phones


@pytest.mark.parametrize("name, method", [
    ("03-01-04-01-01-02-09", "anchored"),      # sad, very quiet: the search loses its path
    ("03-01-06-02-02-02-06", "proportional"),  # fearful, screamed (median F0 ~700 Hz)
])
def test_clip_without_a_search_path_is_kept_and_marked(ravdess, aligner, name, method):
    text = KIDS if name.split("-")[4] == "01" else DOGS
    path = _clip(ravdess, name)
    ali = aligner.align(Utterance(name, path, text))
    assert ali.method == method
    assert (ali.quality > 0.0) if method == "anchored" else (ali.quality == 0.0)
    assert [w.word for w in ali.words] == text.split()
    edges = [t for w in ali.words for t in (w.start_s, w.end_s)]
    assert edges == sorted(edges) and 0.0 <= edges[0] and edges[-1] <= ali.duration_s
    assert ali.words[-1].end_s - ali.words[0].start_s > 1.0  # spread over the speech


def test_method_and_quality_reach_sidecar_summary_and_loader(tmp_path, ravdess, aligner):
    names = ["03-01-01-01-01-01-01", "03-01-04-01-01-02-09"]
    utts = [Utterance(n, _clip(ravdess, n), KIDS) for n in names]
    summary = align_corpus(utts, tmp_path, aligner)
    assert summary.ok
    record = json.loads((tmp_path / "summary.json").read_text())
    assert record["methods"] == {"anchored": 1, "viterbi": 1}
    side = json.loads((tmp_path / f"{names[1]}.align.json").read_text())
    assert side["method"] == "anchored" and 0.0 < side["quality"] < 1.0
    loaded = load_alignment(tmp_path, utts[1])
    assert loaded.method == "anchored" and loaded.quality == side["quality"]


# -- wrong transcripts are refused, with the reason ---------------------------------------------
def test_another_sentence_is_refused(ravdess, aligner):
    path = _clip(ravdess, "03-01-02-01-01-01-02")  # says "Kids are talking by the door"
    with pytest.raises(AlignmentError, match="does not match the audio.*fit the sound poorly"):
        aligner.align(Utterance("w", path, DOGS))


def test_path_evidence_is_what_align_judges(ravdess, aligner):
    """The evidence the refusal reads, before any decision: the right statement's path has a
    small poor-word share, the other statement's more than the limit."""
    path = _clip(ravdess, "03-01-02-01-01-01-02")
    method, quality, share = aligner.path_evidence(Utterance("r", path, KIDS))
    assert method == "viterbi" and quality == aligner.align(Utterance("r", path, KIDS)).quality
    assert share <= aligner.config.max_poor_share
    assert aligner.path_evidence(Utterance("w", path, DOGS))[2] > aligner.config.max_poor_share


def test_a_drawn_out_word_is_not_another_sentence(ravdess, aligner):
    """03-01-04-02-02-02-03 (sad, strong) says its statement with a long, poorly fitting 'door':
    43 % of the words' time fits poorly but 5 of the 18 phones, so it is kept; measured on the
    words' time alone (the rule before) it was refused. The other statement stays refused."""
    path = _clip(ravdess, "03-01-04-02-02-02-03")
    right = Utterance("r", path, DOGS)
    assert aligner.align(right).method == "viterbi"
    _, _, evidence = aligner.word_evidence(right)
    poor = [w for w in evidence if w[2] < aligner.config.min_word_quality]
    assert [w[0] for w in poor] == ["are", "door"]
    limit = aligner.config.max_poor_share
    assert sum(w[1] for w in poor) / sum(w[1] for w in evidence) > limit  # frames
    assert sum(w[3] for w in poor) / sum(w[3] for w in evidence) <= limit  # phones: 5 of 18
    assert aligner.path_evidence(right)[2] <= limit
    time_only = get_aligner("pocketsphinx", poor_share_of_phones=False)
    with pytest.raises(AlignmentError, match=r"'door' \(43% of the words' time, more than"):
        time_only.align(right)
    with pytest.raises(AlignmentError, match="of the words' time and .* of the transcript's "
                                             "phones, more than 30%"):
        aligner.align(Utterance("w", path, KIDS))


def test_another_language_is_refused(shared_data, aligner):
    mfa = shared_data / "mfa-test"
    with pytest.raises(TranscriptError, match="not English|does not look English"):
        aligner.align(single_clip(mfa / "wav" / "se10x016-08071999-1334_u0016001.wav",
                                  mfa / "lab" / "se10x016-08071999-1334_u0016001.lab"))
    # Spanish speech with its Spanish transcript: most words are in CMUdict (names), so only
    # the acoustics can tell
    with pytest.raises(AlignmentError, match="does not match the audio"):
        aligner.align(single_clip(mfa / "wav" / "13697_11991_000000.opus",
                                  mfa / "lab" / "13697_11991_000000.lab"))
    # Japanese speech with an English transcript
    with pytest.raises(AlignmentError, match="does not match the audio"):
        aligner.align(Utterance("ja", mfa / "wav" / "common_voice_ja_24511055.mp3",
                                "there is a light on the pole outside the camp"))


def test_music_is_refused(tmp_path, aligner):
    """A melody (harmonic notes with vibrato) and a rhythmic one with rests between notes."""
    notes = [262, 330, 392, 523, 392, 330, 294, 349, 440, 349]
    t = np.arange(round(0.3 * SAMPLE_RATE)) / SAMPLE_RATE
    legato, staccato = [], []
    for f0 in notes:
        phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.01 * np.sin(2 * np.pi * 5 * t))) / SAMPLE_RATE
        note = sum(np.sin(k * phase) / k for k in range(1, 6)) * 0.2
        legato.append(note)
        staccato += [note * np.exp(-6 * t), np.zeros(round(0.2 * SAMPLE_RATE))]
    for name, parts in (("legato", legato), ("staccato", staccato)):
        path = tmp_path / f"{name}.wav"
        sf.write(path, np.concatenate(parts).astype(np.float32), SAMPLE_RATE)
        with pytest.raises(AlignmentError, match="no speech|does not match") as err:
            aligner.align(Utterance(name, path, KIDS))
        assert err.value.path == str(path)


def test_silence_is_refused(tmp_path, aligner):
    path = tmp_path / "hiss.wav"
    noise = np.random.default_rng(1).standard_normal(4 * SAMPLE_RATE) * 1e-3
    sf.write(path, noise.astype(np.float32), SAMPLE_RATE)
    with pytest.raises(AlignmentError, match="no speech found"):
        aligner.align(Utterance("s", path, KIDS))


def test_ten_minutes_with_three_words_is_refused(tmp_path, ravdess, aligner):
    clips = sorted(ravdess.glob("Actor_0[1-4]/*.flac"))[:180]  # ~10 minutes of real speech
    path = tmp_path / "long.flac"
    sf.write(path, np.concatenate([load_audio(c) for c in clips]), SAMPLE_RATE)
    with pytest.raises(AlignmentError, match="far more than the transcript"):
        aligner.align(Utterance("l", path, "Kids are talking"))


def test_quality_filter_and_method_counts():
    from cmbert_pipe.align.quality import describe_methods, passes

    assert passes(0.4, None) and passes(None, None) and passes(0.4, 0.3)
    assert not passes(0.2, 0.3) and not passes(None, 0.3)  # unknown quality fails a minimum
    assert describe_methods(["anchored", "viterbi", "viterbi", "", "proportional"]) == (
        "viterbi 2, anchored 1, proportional 1, unknown 1")
