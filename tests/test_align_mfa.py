"""The MFA adapter on what is real here: the corpus folder it prepares, the exact command line,
and reading MFA's real TextGrids (../shared/data/mfa-test/textgrid) back onto the transcript.

MFA itself (Kaldi binaries from conda-forge) is not installed here. The end-to-end test puts a
stand-in ``mfa`` executable on PATH that records its arguments and answers with MFA's real
output files, so the adapter's subprocess, log and read-back paths run for real."""

from __future__ import annotations

import os
import stat
import sys

import pytest
import soundfile as sf

from cmbert_pipe.align import align_corpus, get_aligner, load_alignment, read_textgrid
from cmbert_pipe.align.mfa import MfaAligner, map_words
from cmbert_pipe.align.normalize import spoken_words
from cmbert_pipe.corpus import read_transcript
from cmbert_pipe.errors import AlignmentError
from cmbert_pipe.schema import Utterance


@pytest.fixture(scope="module")
def mfa(shared_data):
    return shared_data / "mfa-test"


def test_exact_command_line(tmp_path):
    aligner = MfaAligner(num_jobs=3, dictionary="/d/english.dict", acoustic_model="english_mfa")
    assert aligner.command(tmp_path / "c", tmp_path / "o") == [
        "mfa", "align", str(tmp_path / "c"), "/d/english.dict", "english_mfa",
        str(tmp_path / "o"), "--output_format", "long_textgrid", "--clean", "--overwrite",
        "--num_jobs", "3", "--beam", "10", "--retry_beam", "40",
    ]
    s = aligner.settings()
    assert s["backend"] == "mfa" and s["dictionary"] == "/d/english.dict"


def test_prepared_corpus(tmp_path, mfa):
    utts = [
        Utterance("dir/clip one", mfa / "wav" / "61-70968-0000.flac",
                  read_transcript(mfa / "lab" / "61-70968-0000.lab"), speaker="spk 1"),
        Utterance("stereo 24bit", mfa / "wav" / "cold_corpus_24bit.wav", "oh yes, they - they"),
        Utterance("bad", mfa / "wav" / "missing.wav", "hello"),
    ]
    errors = []
    prepared = MfaAligner().prepare_corpus(utts, tmp_path / "corpus",
                                           lambda u, e: errors.append((u.id, e.reason)))
    assert errors == [("bad", "audio file not found")]
    assert sorted(prepared) == ["utt000000", "utt000001"]
    wav = tmp_path / "corpus" / "spk_1" / "utt000000.wav"
    info = sf.info(str(wav))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert (tmp_path / "corpus" / "speaker" / "utt000001.lab").read_text() == "oh yes they they\n"


def test_map_real_mfa_words_onto_the_transcript(mfa):
    """MFA's own output for cold_corpus3 (lower-cased, <vocnoise>) maps back 1:1."""
    ref = read_textgrid(mfa / "textgrid" / "cold_corpus3.TextGrid")
    words = spoken_words(read_transcript(mfa / "lab" / "cold_corpus3.lab"))
    mapped = map_words(words, ref.words)
    assert [w.word for w in mapped] == [w.text for w in words]
    assert "<VOCNOISE>" in [w.word for w in mapped]
    assert [(w.start_s, w.end_s) for w in mapped] == [(w.start_s, w.end_s) for w in ref.words]


def test_map_words_fills_words_mfa_left_out(mfa):
    ref = read_textgrid(mfa / "textgrid" / "acoustic_corpus.TextGrid")
    words = spoken_words(read_transcript(mfa / "lab" / "acoustic_corpus.lab"))
    mapped = map_words(words, ref.words)
    assert [w.word for w in mapped] == [w.text for w in words]  # one per transcript word
    starts = [w.start_s for w in mapped]
    assert starts == sorted(starts) and all(w.end_s >= w.start_s for w in mapped)


def _standin_mfa(bin_dir, textgrid, exit_code=0):
    """An ``mfa`` on PATH that logs argv and writes MFA's real TextGrid for each .lab file."""
    script = bin_dir / "mfa"
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys, shutil, pathlib\n"
        "argv = sys.argv[1:]\n"
        "if argv[:1] == ['version']:\n"
        "    print('3.1.0'); sys.exit(0)\n"
        f"pathlib.Path({str(bin_dir / 'argv.txt')!r}).write_text(' '.join(argv))\n"
        f"if {exit_code}: print('boom', file=sys.stderr); sys.exit({exit_code})\n"
        "corpus, out = pathlib.Path(argv[1]), pathlib.Path(argv[4])\n"
        "for lab in corpus.rglob('*.lab'):\n"
        "    dest = out / lab.relative_to(corpus).with_suffix('.TextGrid')\n"
        "    dest.parent.mkdir(parents=True, exist_ok=True)\n"
        f"    shutil.copy({str(textgrid)!r}, dest)\n",
        encoding="utf-8",
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


def test_end_to_end_with_standin_mfa(tmp_path, mfa, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _standin_mfa(bin_dir, mfa / "textgrid" / "cold_corpus3.TextGrid")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    utt = Utterance("c3", mfa / "wav" / "cold_corpus3.wav",
                    read_transcript(mfa / "lab" / "cold_corpus3.lab"))
    aligner = get_aligner("mfa")
    summary = align_corpus([utt], tmp_path / "out", aligner)
    assert summary.done == 1 and not summary.failures
    argv = (bin_dir / "argv.txt").read_text().split()
    assert argv[0] == "align" and argv[2:4] == ["english_us_arpa", "english_us_arpa"]
    ali = load_alignment(tmp_path / "out", utt)
    assert ali.words[0].word == "alright" and len(ali.words) == 63
    assert ali.aligner == "mfa-3.1.0"
    assert align_corpus([utt], tmp_path / "out", aligner).skipped == 1


def test_mfa_failure_fails_every_item_with_the_reason(tmp_path, mfa, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _standin_mfa(bin_dir, mfa / "textgrid" / "cold_corpus3.TextGrid", exit_code=1)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    utt = Utterance("c3", mfa / "wav" / "61-70968-0000.flac", "he began")
    summary = align_corpus([utt], tmp_path / "out", get_aligner("mfa"))
    assert summary.failures[0].item_id == "c3"
    assert "mfa align failed (exit 1): boom" in summary.failures[0].reason


def test_missing_mfa_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(AlignmentError, match="conda install -c conda-forge"):
        get_aligner("mfa").executable()
