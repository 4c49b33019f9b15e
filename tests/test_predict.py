"""Predict: word-level attention maths, one real clip through a real (untrained) CM-BERT bundle,
batch scoring with failures and resume, the attention picture."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from cmbert_pipe.errors import AudioError, ModelError
from cmbert_pipe.predict import (
    AttentionMaps,
    Predictor,
    _piece_groups,
    class7_of,
    polarity_of,
    predict_corpus,
    reduce_to_words,
)
from cmbert_pipe.schema import SENTIMENT_CLASSES, Prediction, Utterance

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "assets" / "demo"
FEATURE_SET = "egemaps"  # fast; the bundle records it and predict must follow it


def test_polarity_and_seven_classes():
    assert polarity_of(0.0) == "positive" and polarity_of(-0.01) == "negative"
    assert [class7_of(s) for s in (-5, -2.6, -0.5, 0.49, 1.5, 2.5, 9)] == [-3, -3, 0, 0, 2, 2, 3]
    assert SENTIMENT_CLASSES[class7_of(2.2) + 3] == "positive"


def test_reduce_to_words_means_rows_and_sums_columns():
    # pieces: [CLS] a b1 b2 [SEP] [PAD]; word 0 = a, word 1 = b1 b2; word 2 cut by truncation
    word_ids = [None, 0, 1, 1, None]
    groups = _piece_groups(word_ids, 3)
    assert groups.shape == (5, 5)
    rng = np.random.default_rng(0)
    m = rng.random((5, 5))
    m /= m.sum(axis=1, keepdims=True)
    w = reduce_to_words(m, groups)  # groups: CLS, a, b, (cut), SEP
    assert w[0, 1] == pytest.approx(m[0, 1])
    assert w[0, 2] == pytest.approx(m[0, 2] + m[0, 3])
    assert w[2, 0] == pytest.approx((m[2, 0] + m[3, 0]) / 2)
    assert np.isnan(w[3]).all() and np.isnan(w[:, 3]).all()
    keep = [0, 1, 2, 4]
    np.testing.assert_allclose(w[np.ix_(keep, keep)].sum(axis=1), 1.0)


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    """A real CM-BERT bundle (embedded MiniLM encoder, untrained head) on eGeMAPS features."""
    import torch

    from cmbert_pipe.acoustic import get_feature_set
    from cmbert_pipe.model import ModelConfig, build_model
    from cmbert_pipe.model.bundle import save_bundle
    from cmbert_pipe.model.inputs import AudioStats, load_tokenizer

    torch.manual_seed(0)
    dim = get_feature_set(FEATURE_SET).dim
    config = ModelConfig(model="cmbert", audio_dim=dim, cls_audio="mean")
    model = build_model(config).eval()
    out = tmp_path_factory.mktemp("bundle") / "model"
    settings = {"aligner": {"name": "pocketsphinx", "options": {}}, "feature_set": FEATURE_SET}
    from cmbert_pipe.acoustic import extract_frames
    from cmbert_pipe.audio import load_audio

    frames = [extract_frames(load_audio(DEMO / f"{u}.flac"), 16_000, FEATURE_SET)
              for u in ("pos02", "neg02", "neu02")]  # (T, D) each: realistic statistics
    stats = AudioStats.from_features(frames, dim)
    save_bundle(out, model, load_tokenizer(""), stats, settings, {})
    return out


@pytest.fixture(scope="module")
def predictor(bundle_dir):
    return Predictor.from_pretrained(bundle_dir)


def test_predict_one_real_clip(predictor, tmp_path):
    transcript = tmp_path / "pos01.txt"
    transcript.write_text("I really loved this movie\n")
    p, maps = predictor.analyse(DEMO / "pos01.flac", transcript)
    assert isinstance(p, Prediction)
    assert -3.0 <= p.score <= 3.0 and p.polarity in ("positive", "negative")
    assert p.class7 == class7_of(p.score) and p.class7_name == SENTIMENT_CLASSES[p.class7 + 3]
    assert [w.word for w in p.words] == ["I", "really", "loved", "this", "movie"]
    starts = [w.start_s for w in p.words]
    assert starts == sorted(starts) and all(w.end_s > w.start_s for w in p.words)
    assert p.words[-1].end_s <= 1.5  # the clip is 1.34 s long
    # the [CLS] row is a distribution over [CLS], the words and [SEP]
    mm = np.array([w.multimodal for w in p.words])
    tx = np.array([w.text for w in p.words])
    assert (mm >= 0).all() and mm.sum() <= 1.0 + 1e-6
    assert (tx >= 0).all() and tx.sum() <= 1.0 + 1e-6
    assert maps.labels == ("[CLS]", "I", "really", "loved", "this", "movie", "[SEP]")
    np.testing.assert_allclose(maps.multimodal.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(maps.text.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(maps.multimodal[0, 1:-1], mm, atol=1e-6)
    assert set(p.timings_s) == {f"{k}{u}" for k in ("load", "align", "features", "model")
                                for u in ("_s", "_cpu_s")}
    # same clip, transcript as text: same result; JSON round trip
    q = predictor.predict(DEMO / "pos01.flac", "I really loved this movie")
    assert q.score == pytest.approx(p.score, abs=1e-6)
    assert Prediction.from_dict(json.loads(json.dumps(p.to_dict()))) == p


def test_the_audio_changes_the_score(predictor, tmp_path):
    """cls_audio="mean": the [CLS] row sees the audio, so the same words said differently
    (here: quieter, with a hum) get another score."""
    import soundfile as sf

    from cmbert_pipe.audio import load_audio

    wave = load_audio(DEMO / "pos01.flac")
    t = np.arange(len(wave)) / 16_000
    other = (0.25 * wave + 0.02 * np.sin(2 * np.pi * 100 * t)).astype(np.float32)
    sf.write(tmp_path / "other.wav", other, 16_000)
    a = predictor.predict(DEMO / "pos01.flac", "I really loved this movie")
    b = predictor.predict(tmp_path / "other.wav", "I really loved this movie")
    assert a.score != b.score


def test_predict_errors_name_the_file(predictor, tmp_path):
    with pytest.raises(AudioError, match="missing.wav"):
        predictor.predict(tmp_path / "missing.wav", "hello")
    with pytest.raises(ModelError, match="not a model bundle"):
        Predictor.from_pretrained(tmp_path / "nothing")


def test_batch_predict_reports_failures_and_resumes(predictor, tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF not really a wave file")
    utts = [Utterance("pos01", DEMO / "pos01.flac", "I really loved this movie", label=3.0),
            Utterance("broken", bad, "hello there"),
            Utterance("neg01", DEMO / "neg01.flac", "I hated this movie", label=-3.0)]
    out = tmp_path / "preds.csv"
    summary = predict_corpus(predictor, utts, out)
    assert summary.done == 2 and [f.item_id for f in summary.failures] == ["broken"]
    assert "broken.wav" in (summary.failures[0].path or "")
    rows = out.read_text().splitlines()
    assert rows[0].startswith("id,audio,score") and len(rows) == 3
    again = predict_corpus(predictor, utts, out)  # resume: the two scored clips are skipped
    assert again.skipped == 2 and again.done == 0 and len(again.failures) == 1
    jl = tmp_path / "preds.jsonl"
    predict_corpus(predictor, utts[:1], jl)
    record = Prediction.from_dict(json.loads(jl.read_text().splitlines()[0]))
    assert record.utterance_id == "pos01" and record.label == 3.0 and record.words


def test_attention_png(predictor, tmp_path):
    from cmbert_pipe.plots import attention_png

    p, maps = predictor.analyse(DEMO / "pos03.flac", "What a great and happy ending")
    png = attention_png(maps, tmp_path / "att.png", title=f"{p.score:+.2f}")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    with pytest.raises(ModelError, match="no attention"):
        attention_png(AttentionMaps(("[CLS]", "a", "[SEP]"), None, None), tmp_path / "x.png")


def test_text_only_bundle_aligns_for_times_and_has_no_attention(tmp_path):
    """A T-BERT bundle trained on text TSVs: no features are computed, words still get times."""
    from cmbert_pipe.model import ModelConfig, build_model
    from cmbert_pipe.model.bundle import save_bundle
    from cmbert_pipe.model.inputs import AudioStats, load_tokenizer

    config = ModelConfig(model="tbert")
    save_bundle(tmp_path / "tbert", build_model(config).eval(), load_tokenizer(""),
                AudioStats.identity(config.audio_dim), {"source": "text"}, {})
    predictor = Predictor.from_pretrained(tmp_path / "tbert")
    assert predictor.feature_set is None
    p, maps = predictor.analyse(DEMO / "pos05.flac", "The music was beautiful")
    assert [w.word for w in p.words] == ["The", "music", "was", "beautiful"]
    assert all(w.multimodal is None and w.text is None for w in p.words)
    assert p.words[-1].end_s > p.words[0].start_s and maps.multimodal is None


def test_acoustic_path_bundle_predicts_with_gate_and_speaker_notes(tmp_path):
    """An untrained CM-BERT with the encoder acoustic path over words and frames, per-speaker
    standardisation: one clip falls back to the global statistics and says so; a corpus gets
    each speaker's own statistics; the gate of the acoustic path is reported; the CLI shows it."""
    import torch
    from typer.testing import CliRunner

    from cmbert_pipe.acoustic import extract_frames, get_feature_set
    from cmbert_pipe.audio import load_audio
    from cmbert_pipe.cli import app
    from cmbert_pipe.model import ModelConfig, build_model
    from cmbert_pipe.model.bundle import save_bundle
    from cmbert_pipe.model.inputs import AudioStats, load_tokenizer

    torch.manual_seed(0)
    dim = get_feature_set(FEATURE_SET).dim
    config = ModelConfig(model="cmbert", audio_dim=dim, audio_head="encoder", frames=True,
                         objective="binary", audio_norm="speaker")
    frames = [extract_frames(load_audio(DEMO / f"{u}.flac"), 16_000, FEATURE_SET)
              for u in ("pos02", "neg02", "neu02")]
    stats = AudioStats.from_features(frames, dim)
    settings = {"aligner": {"name": "pocketsphinx", "options": {}}, "feature_set": FEATURE_SET}
    save_bundle(tmp_path / "m", build_model(config).eval(), load_tokenizer(""), stats, settings,
                {}, frame_stats=stats)
    predictor = Predictor.from_pretrained(tmp_path / "m")
    p = predictor.predict(DEMO / "pos01.flac", "I really loved this movie")
    assert p.acoustic_gate is not None and 0.0 < p.acoustic_gate < 1.0
    assert p.acoustic_shift is not None and p.acoustic_shift > 0.0
    assert "unknown" in p.note and "global" in p.note
    utts = [Utterance("pos01", DEMO / "pos01.flac", "I really loved this movie", speaker="s1"),
            Utterance("neg01", DEMO / "neg01.flac", "I hated this movie", speaker="s1")]
    out = tmp_path / "preds.jsonl"
    summary = predict_corpus(predictor, utts, out)
    assert summary.done == 2 and not summary.failures
    records = [Prediction.from_dict(json.loads(x)) for x in out.read_text().splitlines()]
    assert all("own unlabelled clips" in r.note for r in records)
    assert records[0].score != pytest.approx(p.score, abs=1e-9)  # other statistics
    res = CliRunner().invoke(app, ["predict", str(DEMO / "pos01.flac"), "--text",
                                   "I really loved this movie", "--model", str(tmp_path / "m")])
    assert res.exit_code == 0, res.output
    assert "acoustic path: gate" in res.output


def test_audio_start_bundle_shows_the_audio_branch_alone(tmp_path):
    """A model started from an audio-only model (--audio-start): predict reports the score of
    its audio-only branch, which right after the start is the whole score (the text side's
    output weights are zero), and the CLI prints it."""
    import torch
    from typer.testing import CliRunner

    from cmbert_pipe.acoustic import extract_frames, get_feature_set
    from cmbert_pipe.audio import load_audio
    from cmbert_pipe.cli import app
    from cmbert_pipe.model import ModelConfig, build_model
    from cmbert_pipe.model.bundle import save_bundle
    from cmbert_pipe.model.inputs import AudioStats, load_tokenizer

    torch.manual_seed(0)
    dim = get_feature_set(FEATURE_SET).dim
    config = ModelConfig(model="magbert", audio_dim=dim, audio_head="encoder", frames=True,
                         objective="binary", audio_start=True)
    audio = build_model(ModelConfig(model="audio", audio_dim=dim, audio_head="encoder",
                                    frames=True, objective="binary"))
    with torch.no_grad():
        audio.regressor.bias.fill_(0.3)
    net = build_model(config)
    net.start_from_audio(audio)
    frames = [extract_frames(load_audio(DEMO / f"{u}.flac"), 16_000, FEATURE_SET)
              for u in ("pos02", "neg02", "neu02")]
    stats = AudioStats.from_features(frames, dim)
    settings = {"aligner": {"name": "pocketsphinx", "options": {}}, "feature_set": FEATURE_SET}
    save_bundle(tmp_path / "m", net.eval(), load_tokenizer(""), stats, settings, {},
                frame_stats=stats)
    p = Predictor.from_pretrained(tmp_path / "m").predict(DEMO / "pos01.flac",
                                                          "I really loved this movie")
    assert p.audio_branch_score is not None
    assert p.audio_branch_score == pytest.approx(p.score, abs=1e-5)
    res = CliRunner().invoke(app, ["predict", str(DEMO / "pos01.flac"), "--text",
                                   "I really loved this movie", "--model", str(tmp_path / "m")])
    assert res.exit_code == 0, res.output
    assert "audio-only branch alone" in res.output
