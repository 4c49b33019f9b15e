"""cmbert_pipe.audio: every format in the MFA test corpus decodes to 16 kHz mono float32;
broken files are AudioErrors naming the file."""

from __future__ import annotations

import re

import numpy as np
import pytest
import soundfile as sf

from cmbert_pipe.audio import load_audio, resample
from cmbert_pipe.errors import AudioError
from cmbert_pipe.io import file_digest
from cmbert_pipe.schema import SAMPLE_RATE


@pytest.mark.parametrize(
    "name",
    ["cold_corpus.wav", "cold_corpus_24bit.wav", "cold_corpus_32bit_float.wav",
     "61-70968-0000.flac", "common_voice_en_22058266.mp3", "13697_11991_000000.opus"],
)
def test_formats_decode_to_16k_mono(shared_data, name):
    path = shared_data / "mfa-test" / "wav" / name
    wave = load_audio(path)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert 0.05 < np.max(np.abs(wave)) <= 1.0
    info_s = sf.info(str(path)).duration if name.endswith((".wav", ".flac")) else None
    if info_s is not None:
        assert len(wave) / SAMPLE_RATE == pytest.approx(info_s, abs=0.01)


def test_bit_depths_give_the_same_signal(shared_data):
    wav = shared_data / "mfa-test" / "wav"
    ref = load_audio(wav / "cold_corpus.wav")
    for other in ("cold_corpus_24bit.wav", "cold_corpus_32bit_float.wav"):
        x = load_audio(wav / other)
        assert x.shape == ref.shape
        assert np.corrcoef(x, ref)[0, 1] > 0.999


def test_channels_are_averaged_and_rates_converted(tmp_path):
    t = np.arange(44_100) / 44_100
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    sf.write(tmp_path / "st.wav", np.stack([tone, 0.0 * tone], axis=1), 44_100, subtype="FLOAT")
    wave = load_audio(tmp_path / "st.wav")
    assert len(wave) == SAMPLE_RATE
    assert np.max(np.abs(wave)) == pytest.approx(0.25, abs=0.01)  # mean of tone and silence
    spectrum = np.abs(np.fft.rfft(wave))
    assert np.argmax(spectrum) == pytest.approx(440, abs=1)  # 1 Hz bins over 1 s
    assert resample(wave, SAMPLE_RATE) is wave


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda p: p.write_bytes(b""), "empty (0 bytes)"),
        (lambda p: p.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 10), "cannot decode"),
        (lambda p: sf.write(p, np.zeros(16_000, np.float32), 16_000), "silent"),
        (lambda p: sf.write(p, np.full(400, 0.1, np.float32), 16_000), "too short"),
        (lambda p: sf.write(p, np.array([0.1, np.nan] * 8000, np.float32), 16_000,
                            subtype="FLOAT"), "NaN"),
    ],
)
def test_broken_audio_is_an_audio_error_naming_the_file(tmp_path, make, reason):
    path = tmp_path / "bad file é.wav"
    make(path)
    with pytest.raises(AudioError, match=re.escape(reason)) as err:
        load_audio(path)
    assert err.value.path == str(path)


def test_truncated_wav_is_reported(tmp_path):
    sf.write(tmp_path / "full.wav", 0.1 * np.ones(32_000, np.float32), 16_000, subtype="PCM_16")
    raw = (tmp_path / "full.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(raw[:20_000])
    with pytest.raises(AudioError, match="truncated"):
        load_audio(tmp_path / "cut.wav")
    assert len(load_audio(tmp_path / "full.wav")) == 32_000


def test_missing_file_and_silence_allowed(tmp_path):
    with pytest.raises(AudioError, match="not found"):
        load_audio(tmp_path / "nope.wav")
    sf.write(tmp_path / "s.wav", np.zeros(16_000, np.float32), 16_000)
    assert load_audio(tmp_path / "s.wav", allow_silent=True).shape == (16_000,)


def test_file_digest_is_content_address(tmp_path):
    (tmp_path / "a").write_bytes(b"abc")
    (tmp_path / "b").write_bytes(b"abc")
    assert file_digest(tmp_path / "a") == file_digest(tmp_path / "b")
    assert file_digest(tmp_path / "a").startswith("ba7816bf")  # sha256("abc")
