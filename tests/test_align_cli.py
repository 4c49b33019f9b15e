"""``cmbert align`` end to end with Typer's CliRunner: every bad input of issue 2 on real or
really broken files made in tmp_path. Each one is a per-utterance failure naming the file and
the reason; the other utterances are still aligned; the exit code is non-zero; no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from cmbert_pipe.audio import load_audio
from cmbert_pipe.cli import app

runner = CliRunner()
GOOD_TEXT = (
    "HE BEGAN A CONFUSED COMPLAINT AGAINST THE WIZARD WHO HAD VANISHED BEHIND THE CURTAIN "
    "ON THE LEFT"
)


@pytest.fixture(scope="module")
def speech(shared_data) -> np.ndarray:
    """4.9 s of real read speech (LibriSpeech 61-70968-0000), 16 kHz mono."""
    return load_audio(shared_data / "mfa-test" / "wav" / "61-70968-0000.flac")


def _good(folder: Path, speech: np.ndarray, stem: str = "good") -> None:
    sf.write(folder / f"{stem}.wav", speech, 16000, subtype="PCM_16")
    (folder / f"{stem}.txt").write_text(GOOD_TEXT, encoding="utf-8")


def _run(*args: str):
    return runner.invoke(app, ["align", *args])


def _failures(out: Path) -> dict[str, dict]:
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    return {f["item_id"]: f for f in summary["failures"]}


def test_help_lists_align():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "align" in result.output
    assert "--aligner" in runner.invoke(app, ["align", "--help"]).output


def test_bad_inputs_fail_per_utterance_and_the_rest_is_aligned(tmp_path, speech, shared_data):
    corpus, out = tmp_path / "corpus", tmp_path / "out"
    corpus.mkdir()
    _good(corpus, speech)
    # unreadable audio: random bytes with a .wav name
    (corpus / "garbage.wav").write_bytes(np.random.default_rng(0).bytes(4000))
    (corpus / "garbage.txt").write_text("hello world")
    # truncated audio: a real WAV cut in half / a real FLAC cut in half
    sf.write(corpus / "whole.wav", speech, 16000, subtype="PCM_16")
    raw = (corpus / "whole.wav").read_bytes()
    (corpus / "whole.wav").unlink()
    (corpus / "cut.wav").write_bytes(raw[: len(raw) // 2])
    (corpus / "cut.txt").write_text(GOOD_TEXT)
    flac = (shared_data / "mfa-test" / "wav" / "61-70968-0000.flac").read_bytes()
    (corpus / "cutflac.flac").write_bytes(flac[: len(flac) // 2])
    (corpus / "cutflac.txt").write_text(GOOD_TEXT)
    # zero-length and all-silent audio
    (corpus / "empty.wav").write_bytes(b"")
    (corpus / "empty.txt").write_text("hello")
    sf.write(corpus / "silent.wav", np.zeros(32000, np.float32), 16000)
    (corpus / "silent.txt").write_text("hello")
    # empty transcript, missing transcript
    _good(corpus, speech, "notext")
    (corpus / "notext.txt").write_text("  \n")
    sf.write(corpus / "orphan.wav", speech, 16000)
    # transcript that does not match the audio
    _good(corpus, speech, "mismatch")
    (corpus / "mismatch.txt").write_text(
        (shared_data / "mfa-test" / "lab" / "multilingual_ipa_5.txt").read_text())
    # non-English text (another script; and Swedish, Latin script but not in the dictionary)
    _good(corpus, speech, "japanese")
    (corpus / "japanese.txt").write_text("真っ昼間なのにキャンプの外れの電柱に", encoding="utf-8")
    _good(corpus, speech, "swedish")
    (corpus / "swedish.txt").write_text("Testar en två tre fyra fem sex sju åtta", encoding="utf-8")
    # a word with no letters
    _good(corpus, speech, "noletters")
    (corpus / "noletters.txt").write_text("HE BEGAN ♪♪ A CONFUSED COMPLAINT", encoding="utf-8")
    # a 10-minute recording: refused from its header, before decoding (bounded time)
    long_wave = np.tile(speech, int(600 / 4.9) + 1)[: 600 * 16000]
    sf.write(corpus / "tenminutes.wav", long_wave, 16000, subtype="PCM_16")
    (corpus / "tenminutes.txt").write_text(GOOD_TEXT)

    result = _run(str(corpus), "--out", str(out))
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert (out / "good.TextGrid").is_file()
    fails = _failures(out)
    expect = {
        "garbage": "cannot decode",
        "cut": "truncated",
        "cutflac": "cannot decode",
        "empty": "empty (0 bytes)",
        "silent": "silent",
        "notext": "transcript is empty",
        "orphan": "no transcript",
        "mismatch": "does not match the audio",
        "japanese": "not English",
        "swedish": "not in the English dictionary",
        "noletters": "no letters",
        "tenminutes": "600 s long",
    }
    assert set(fails) == set(expect)
    for item, reason in expect.items():
        assert reason in fails[item]["reason"], (item, fails[item])
        assert item in Path(fails[item]["path"]).name, (item, fails[item])
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["total"], summary["done"], summary["failed"]) == (13, 1, 12)


def test_path_with_spaces_and_non_ascii_single_clip_and_rerun(tmp_path, speech):
    folder = tmp_path / "my clips" / "séance ünï"
    folder.mkdir(parents=True)
    _good(folder, speech, "clip één")
    out = tmp_path / "out dir"
    result = _run(str(folder / "clip één.wav"), str(folder / "clip één.txt"), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert (out / "clip één.TextGrid").is_file()
    again = _run(str(folder / "clip één.wav"), str(folder / "clip één.txt"), "--out", str(out))
    assert again.exit_code == 0 and "1 already current" in again.output


def test_transcripts_folder_manifest_and_jobs(tmp_path, speech):
    wav, lab, out = tmp_path / "wav", tmp_path / "lab", tmp_path / "out"
    (wav / "sub").mkdir(parents=True)
    (lab / "sub").mkdir(parents=True)
    for stem in ("a", "sub/b"):
        sf.write(wav / f"{stem}.flac", speech, 16000)
        (lab / f"{stem}.lab").write_text(GOOD_TEXT)
    result = _run(str(wav), "--transcripts", str(lab), "--out", str(out), "--jobs", "2")
    assert result.exit_code == 0, result.output
    assert (out / "a.TextGrid").is_file() and (out / "sub" / "b.TextGrid").is_file()

    manifest = tmp_path / "m.csv"
    manifest.write_text(f"id,audio,transcript\nm1,wav/a.flac,{GOOD_TEXT}\n", encoding="utf-8")
    result = _run(str(manifest), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert (out / "m1.TextGrid").is_file()


def test_usage_errors_are_one_line(tmp_path, speech):
    sf.write(tmp_path / "clip.wav", speech, 16000)
    result = _run(str(tmp_path / "clip.wav"), "--out", str(tmp_path / "o"))
    assert result.exit_code == 2 and "needs its transcript" in result.output
    result = _run(str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"))
    assert result.exit_code == 2 and "not found" in result.output
    assert "Traceback" not in result.output


def test_missing_mfa_says_how_to_install(tmp_path, speech, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no `mfa` anywhere on PATH
    _good(tmp_path, speech)
    result = _run(str(tmp_path), "--out", str(tmp_path / "o"), "--aligner", "mfa")
    assert result.exit_code == 2
    assert "conda install -c conda-forge montreal-forced-aligner" in result.output
    assert "Traceback" not in result.output


def test_debug_shows_the_traceback_of_a_failed_item(tmp_path):
    (tmp_path / "g.wav").write_bytes(np.random.default_rng(1).bytes(3000))
    (tmp_path / "g.txt").write_text("hello")
    result = runner.invoke(app, ["--debug", "align", str(tmp_path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "Traceback" in result.output


def test_killed_run_resumes_without_losing_finished_work(tmp_path, speech):
    """SIGKILL a real `cmbert align` process once it has finished one clip, then re-run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    corpus, out = tmp_path / "corpus", tmp_path / "out"
    corpus.mkdir()
    for i in range(6):
        _good(corpus, speech, f"clip{i}")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cmbert_pipe", "align", str(corpus), "--out", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    deadline = time.monotonic() + 120
    while not list(out.glob("*.align.json")) and time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = {p.name.split(".")[0] for p in out.glob("*.align.json")}
    assert finished, "the run was killed before finishing any clip"
    result = _run(str(corpus), "--out", str(out))
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped"] >= len(finished) and summary["done"] + summary["skipped"] == 6
    assert len(list(out.glob("*.TextGrid"))) == 6


def test_a_folder_of_ravdess_clips_is_aligned_with_the_statements_its_names_give(
        tmp_path, shared_data):
    """No transcript files, RAVDESS names: the statement comes from the name (a folder with
    one other name stays a folder whose clips lack transcripts)."""
    corpus, out = tmp_path / "rav" / "Actor_01", tmp_path / "out"
    corpus.mkdir(parents=True)
    for name in ("03-01-01-01-01-01-01", "03-01-05-02-02-01-01"):
        src = shared_data / "ravdess-dev" / "Actor_01" / f"{name}.flac"
        (corpus / f"{name}.flac").write_bytes(src.read_bytes())
    result = _run(str(tmp_path / "rav"), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "aligned by: viterbi 2" in result.output
    side = json.loads((out / "03-01-05-02-02-01-01.align.json").read_text(encoding="utf-8"))
    assert side["transcript"] == "Dogs are sitting by the door" and side["method"] == "viterbi"
    (corpus / "other.flac").write_bytes((corpus / "03-01-01-01-01-01-01.flac").read_bytes())
    result = _run(str(tmp_path / "rav"), "--out", str(tmp_path / "out2"))
    assert result.exit_code != 0 and "no transcript" in result.output
