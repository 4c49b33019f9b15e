"""cmbert_pipe.corpus: folders (recursive, --transcripts elsewhere), manifests, single clips."""

from __future__ import annotations

import pytest

from cmbert_pipe.corpus import discover, read_transcript, single_clip
from cmbert_pipe.errors import ConfigError, TranscriptError


def _touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_real_mfa_corpus_with_transcripts_elsewhere(shared_data):
    scan = discover(shared_data / "mfa-test" / "wav", transcripts=shared_data / "mfa-test" / "lab")
    ids = {u.id for u in scan.utterances}
    assert {"acoustic_corpus", "61-70968-0000", "multilingual_ipa"} <= ids
    byid = {u.id: u for u in scan.utterances}
    assert byid["61-70968-0000"].transcript.startswith("HE BEGAN A CONFUSED")
    assert byid["multilingual_ipa"].transcript_path.suffix == ".txt"
    missing = {f.item_id for f in scan.failures if "no transcript" in f.reason}
    assert "mfa_long" in missing and "acoustic_corpus" not in missing


def test_folder_recursive_ids_and_failures(tmp_path):
    _touch(tmp_path / "a.wav")
    (tmp_path / "a.txt").write_text("hello   world\n")
    _touch(tmp_path / "sub dir" / "b.flac")
    (tmp_path / "sub dir" / "b.lab").write_text("\ufeffbom text")
    _touch(tmp_path / "c.mp3")  # no transcript
    _touch(tmp_path / "d.wav")
    (tmp_path / "d.txt").write_text("   ")  # empty transcript
    _touch(tmp_path / "a.flac")  # same id as a.wav
    scan = discover(tmp_path)
    assert [(u.id, u.transcript) for u in scan.utterances] == [
        ("a", "hello world"), ("sub dir/b", "bom text")]
    reasons = {f.item_id: f.reason for f in scan.failures}
    assert "duplicate" in reasons["a"]
    assert "no transcript c.txt or c.lab" in reasons["c"]
    assert reasons["d"] == "transcript is empty"


def test_manifest(tmp_path):
    _touch(tmp_path / "clips" / "x.wav")
    (tmp_path / "t.txt").write_text("from a file")
    (tmp_path / "m.csv").write_text(
        "id,audio,transcript,label,split,speaker\n"
        "x,clips/x.wav,hello there,1.5,train,s1\n"
        "y,clips/x.wav,t.txt,,dev,\n"
        "z,clips/x.wav,,,,\n"
        "w,clips/x.wav,hi,notanumber,,\n"
        "v,clips/x.wav,hi,,holdout,\n"
        "x,clips/x.wav,again,,,\n",
        encoding="utf-8",
    )
    scan = discover(tmp_path / "m.csv")
    u = {u.id: u for u in scan.utterances}
    assert u["x"].label == 1.5 and u["x"].split == "train" and u["x"].speaker == "s1"
    assert u["x"].audio == tmp_path / "clips" / "x.wav"
    assert u["y"].transcript == "from a file"
    reasons = {f.item_id: f.reason for f in scan.failures}
    assert "transcript is empty" in reasons["z"]
    assert "not a number" in reasons["w"]
    assert "holdout" in reasons["v"]
    assert any("duplicate" in r for r in reasons.values())


def test_manifest_and_folder_config_errors(tmp_path):
    (tmp_path / "bad.csv").write_text("id,audio\nx,y.wav\n")
    with pytest.raises(ConfigError, match="lacks column"):
        discover(tmp_path / "bad.csv")
    (tmp_path / "extra.csv").write_text("id,audio,transcript,mood\n")
    with pytest.raises(ConfigError, match="unknown column"):
        discover(tmp_path / "extra.csv")
    with pytest.raises(ConfigError, match="not found"):
        discover(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="--transcripts"):
        discover(tmp_path / "extra.csv", transcripts=tmp_path)


def test_single_clip_and_transcript_errors(tmp_path):
    _touch(tmp_path / "clip.wav")
    (tmp_path / "t.txt").write_bytes("caf\xe9 latin-1".encode("latin-1"))
    u = single_clip(tmp_path / "clip.wav", tmp_path / "t.txt")
    assert (u.id, u.transcript) == ("clip", "café latin-1")
    with pytest.raises(TranscriptError, match="not found") as err:
        read_transcript(tmp_path / "missing.txt")
    assert err.value.path.endswith("missing.txt")
