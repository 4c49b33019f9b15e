"""Long recordings: cut at pauses into pieces aligned one by one (bounded memory), on a real
recording made of 30 RAVDESS clips end to end (91 s, 180 words), against the alignment of
each clip on its own; and the cut planner on its own."""

from __future__ import annotations

import numpy as np
import pytest

from cmbert_pipe.align import get_aligner
from cmbert_pipe.align.segment import SegmentationError, choose_cut, plan_pieces
from cmbert_pipe.audio import load_audio
from cmbert_pipe.datasets.ravdess import STATEMENTS
from cmbert_pipe.errors import AlignmentError
from cmbert_pipe.schema import SAMPLE_RATE, Utterance


def test_choose_cut_prefers_the_last_long_pause_among_trusted_words():
    placed = [(0, 0.0, 1.0), (1, 1.5, 2.0), (2, 2.3, 3.0), (3, 3.1, 4.5), (4, 4.6, 6.0)]
    # word 4 ends after the limit: untrusted; the last pause >= 0.25 s follows word 1
    assert choose_cut(placed, limit_s=5.0, min_pause_s=0.25) == (1, 2.15)
    # no pause that long: the longest gap among trusted words (0.5 s after word 0)
    assert choose_cut(placed, limit_s=5.0, min_pause_s=0.6) == (0, 1.25)
    assert choose_cut(placed, limit_s=0.5, min_pause_s=0.25) is None


def test_plan_pieces_walks_the_recording_and_widens_a_window_without_words():
    # words every 2 s (1.5 s long) except none between 40 and 100 s
    times = [t for t in np.arange(0.0, 200.0, 2.0) if not 40.0 <= t < 100.0]
    words = [(float(t), float(t) + 1.5) for t in times]

    def spot(t0, t1, first):
        return [(i, s, e) for i, (s, e) in enumerate(words) if i >= first and s >= t0 and s < t1]

    pieces = list(plan_pieces(200.0, len(words), spot, window_s=30.0, margin_s=5.0))
    assert pieces[0].start_s == 0.0 and pieces[-1].end_s == 200.0
    assert [p.first_word for p in pieces[1:]] == [p.end_word for p in pieces[:-1]]
    assert pieces[-1].end_word == len(words)
    assert all(p.end_s - p.start_s <= 30.0 * 4 for p in pieces)
    for p in pieces:  # each piece holds exactly its words
        assert all(p.start_s <= words[i][0] and words[i][1] <= p.end_s
                   for i in range(p.first_word, p.end_word))
    with pytest.raises(SegmentationError, match="no word of the transcript"):
        list(plan_pieces(200.0, len(words), spot, window_s=10.0, margin_s=2.0, max_widen=1))


@pytest.fixture(scope="module")
def long_recording(shared_data):
    files = sorted((shared_data / "ravdess-dev").glob("Actor_*/03-01-*.flac"))[::29][:30]
    utts = [Utterance(f.stem, f, STATEMENTS[int(f.stem.split("-")[4])]) for f in files]
    waves = [load_audio(u.audio) for u in utts]
    return utts, waves


def test_long_recording_matches_its_pieces_aligned_one_by_one(long_recording, tmp_path):
    utts, waves = long_recording
    aligner = get_aligner("pocketsphinx")
    reference, offset_s = [], 0.0
    for utt, wave in zip(utts, waves, strict=True):
        ali = aligner.align(utt, wave=wave)
        reference += [(w.word, w.start_s + offset_s, w.end_s + offset_s) for w in ali.words]
        offset_s += wave.shape[0] / SAMPLE_RATE
    whole = np.concatenate(waves)  # (N,)
    long_utt = Utterance("long", tmp_path / "long.wav", " ".join(u.transcript for u in utts))
    ali = aligner.align(long_utt, wave=whole)
    assert [w.word for w in ali.words] == [w for w, _, _ in reference]
    err = np.array([[abs(a - w.start_s), abs(b - w.end_s)]
                    for (_, a, b), w in zip(reference, ali.words, strict=True)]).ravel()
    assert (err <= 0.020).mean() >= 0.8 and (err <= 0.050).mean() >= 0.9 and err.max() < 0.5
    assert ali.phones and ali.method in ("viterbi", "viterbi-wide") and ali.quality > 0.3
    assert ali.duration_s == pytest.approx(whole.shape[0] / SAMPLE_RATE, abs=1e-3)


def test_long_recording_with_another_text_is_refused(long_recording, tmp_path):
    """A long recording whose transcript is another long text: refused, naming the piece."""
    utts, waves = long_recording
    whole = np.concatenate(waves[:18])  # 65 s: long enough to be cut
    text = " ".join(["The quick brown fox jumps over the lazy dog near the river bank"] * 9)
    with pytest.raises(AlignmentError, match="does not match"):
        get_aligner("pocketsphinx").align(Utterance("long", tmp_path / "x.wav", text),
                                          wave=whole)
