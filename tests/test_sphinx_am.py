"""Our own scoring of the PocketSphinx en-us model (cmbert_pipe.align.sphinx_am) on real speech."""

from __future__ import annotations

import numpy as np
import pytest

from cmbert_pipe.align import get_aligner, sphinx_am
from cmbert_pipe.audio import load_audio
from cmbert_pipe.corpus import single_clip


@pytest.fixture(scope="module")
def model():
    return sphinx_am.load_model()


def test_model_files_read_consistently(model):
    mdef = model.mdef
    assert len(mdef.ciphones) == 42 and "SIL" in mdef.ciphones and "AH" in mdef.ciphones
    assert model.means.shape == model.inv_var.shape == (42, 3, 128, 13)
    assert model.log_mixw.shape == (3, 128, mdef.n_sen)
    # quantised mixture weights: each senone's weights per stream sum to about one
    sums = np.exp(model.log_mixw).sum(axis=1)  # (3, n_sen)
    assert 0.85 < sums.min() and sums.max() < 1.05
    # transition rows are distributions, left to right
    tmat = np.exp(model.log_tmat)
    assert np.allclose(tmat.sum(axis=-1), 1.0)
    assert np.all(np.tril(tmat[:, :, :3], -1) == 0)
    # a triphone falls back to another word position, then to its CI phone
    tri = mdef.phone_id("AH", "K", "T", "i")
    assert tri >= 42
    assert mdef.phone_id("AH", "+NSN+", "+SPN+", "i") == mdef.ciphones.index("AH")
    assert set(model.sen2cb[mdef.senones[tri]]) == {mdef.ciphones.index("AH")}


def test_dynamic_features_use_the_same_offsets_in_seconds_at_5_ms():
    """A cepstral ramp c(t) = t / s: its delta is c(t + 20 ms) - c(t - 20 ms) = 0.04 at
    either frame step (2 frames of 10 ms, 4 of 5 ms), its delta-delta 0 inside."""
    for hop_s in (0.010, 0.005):
        t_s = np.arange(200) * hop_s
        cep = np.repeat(t_s[:, None], 13, axis=1)
        feats = sphinx_am.dynamic_features(cep, hop_s)
        assert feats.shape == (200, 39)
        assert np.allclose(feats[20:-20, 13:26], 0.04)
        assert np.allclose(feats[20:-20, 26:], 0.0)


def test_noise_suppression_passes_a_burst_and_damps_stationary_noise():
    """Mel power of 10 s of steady noise, then a burst 100 times stronger: the steady part is
    damped once the noise estimate has risen to it (time constant 2 s; its gain falls to the
    floor of 1/20), the burst passes far less damped; at 5 ms the same in seconds."""
    for hop_s in (0.010, 0.005):
        n_steady, n_burst = round(10.0 / hop_s), round(0.2 / hop_s)
        mel = np.full((n_steady + n_burst, 25), 1e6)
        mel[n_steady:] *= 100.0
        gain = sphinx_am.suppress_noise(mel, hop_s) / mel  # (T, 25)
        steady = gain[n_steady // 2:n_steady].mean()
        burst = gain[n_steady:].mean()
        assert steady < 0.1 and burst > 5 * steady


def first_pass(shared_data):
    """PocketSphinx's own alignment of one real MFA test clip, and its words' phones."""
    mfa = shared_data / "mfa-test"
    utt = single_clip(mfa / "wav" / "61-70968-0000.flac", mfa / "lab" / "61-70968-0000.lab")
    ali = get_aligner("pocketsphinx").align(utt)
    words = [sphinx_am.WordPhones(
        tuple(p.phone for p in ali.phones if w.start_s <= p.start_s and p.end_s <= w.end_s),
        w.start_s, w.end_s) for w in ali.words]
    return utt, ali, words


def test_own_viterbi_lands_near_pocketsphinx_at_10_ms(shared_data, model):
    """On real speech, our scoring and Viterbi over the first alignment's phones put most
    word boundaries where PocketSphinx's own search put them (same frame grid)."""
    utt, ali, words = first_pass(shared_data)
    assert all(w.phones for w in words)
    wave = load_audio(utt.audio)
    spans = sphinx_am.realign_words(model, wave, words, hop_s=0.010, band_s=0.1)
    ours = np.array(spans).ravel()
    theirs = np.array([(w.start_s, w.end_s) for w in ali.words]).ravel()
    assert np.all(np.diff(ours) >= 0)  # in order, not overlapping
    assert np.mean(np.abs(ours - theirs) <= 0.0101) >= 0.97  # 0.94 without noise suppression
    assert np.mean(np.abs(ours - theirs) < 1e-6) >= 0.75
    # the same at 5 ms: a finer grid, the boundaries still close to the first alignment's
    fine = np.array(sphinx_am.realign_words(model, wave, words, hop_s=0.005)).ravel()
    assert np.all(np.isclose(fine / 0.005, np.round(fine / 0.005)))
    assert np.median(np.abs(fine - theirs)) <= 0.02


def test_mllr_raises_the_likelihood_of_the_aligned_frames(shared_data, model):
    """MLLR is a maximum-likelihood estimate: with the frames assigned to the senones of a
    state alignment, the adapted means give those frames a higher likelihood (a wrong stream,
    sign or transpose would lower it)."""
    utt, ali, words = first_pass(shared_data)
    feats = sphinx_am.features(load_audio(utt.audio))  # (T, 39)
    g = sphinx_am._graph(model, feats, words, 0.010, 0.1, 0.03, True, False)
    senones = g.senones[sphinx_am._viterbi(g)]  # (T,)
    adapted = sphinx_am.mllr_adapted(model, feats, senones, min_frames=50)
    assert not np.allclose(adapted.means, model.means)

    def total(m) -> float:
        uniq, inv = np.unique(senones, return_inverse=True)
        return float(sphinx_am.senone_loglik(m, feats, uniq)[np.arange(senones.size), inv].sum())

    assert total(adapted) > total(model) + 0.1 * senones.size  # > 0.1 nats per frame
    spans = sphinx_am.realign_words(model, load_audio(utt.audio), words, adapt=1,
                                    posterior_scale=1.0)
    assert np.all(np.diff(np.array(spans).ravel()) >= 0)
