"""Trustworthy under misuse (issue 11), each case on real files through the real CLI: ids that
would leave the output folder, unexpected exceptions, unwritable outputs, stale alignments,
linked sub-folders, output permissions, transcripts in other encodings, bundle checksums."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cmbert_pipe.cli import app
from cmbert_pipe.errors import CacheError, ConfigError
from cmbert_pipe.io import file_digest

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "assets" / "demo"


def tree(root: Path) -> dict[str, int]:
    """Every file and folder under ``root`` with its size (folders -1): a snapshot to compare."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            out[os.path.relpath(os.path.join(dirpath, name), root)] = -1
        for name in filenames:
            p = os.path.join(dirpath, name)
            out[os.path.relpath(p, root)] = os.lstat(p).st_size
    return out


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def no_traceback(result) -> None:
    """The command ended by its own exit (no exception escaped) and printed no traceback."""
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    assert "Traceback" not in result.output, result.output


def rewrite_index(cache: Path, edit) -> None:
    """Apply ``edit(row_dict) -> row_dict`` to every line of a cache's index.jsonl."""
    lines = (cache / "index.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [edit(json.loads(line)) for line in lines if line.strip()]
    (cache / "index.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows),
                                       encoding="utf-8")


# -- 4: ids become paths only when safe ---------------------------------------------------------

@pytest.mark.parametrize("bad", ["../../x", "/abs/x", "a/../b", "a//b", "a\\b", "nul\x00x",
                                 "", ".", "tab\tx"])
def test_unsafe_ids_are_refused(bad, tmp_path):
    from cmbert_pipe.outputs import id_path, unsafe_id_reason

    assert unsafe_id_reason(bad) is not None
    with pytest.raises(ConfigError):
        id_path(tmp_path, bad, ".csv")


def test_id_through_a_link_out_of_the_folder_is_refused(tmp_path):
    from cmbert_pipe.outputs import id_path

    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "spk").symlink_to(elsewhere)
    with pytest.raises(ConfigError, match="outside"):
        id_path(out, "spk/clip", ".csv")
    assert id_path(out, "spk2/clip", ".csv") == out / "spk2" / "clip.csv"


def test_two_ids_for_one_file_are_refused():
    from cmbert_pipe.outputs import PathClaims

    claims = PathClaims()
    claims.claim("spk/Clip")
    claims.claim("spk/Clip")  # the same id twice is the same owner
    with pytest.raises(ConfigError, match="share one output"):
        claims.claim("spk/clip")


def test_export_frames_refuses_an_index_id_that_leaves_out(demo_workspace, tmp_path):
    sandbox = tmp_path / "sandbox"
    cache = sandbox / "deep" / "cache"
    shutil.copytree(demo_workspace / "cache", cache)
    rewrite_index(cache, lambda r: {**r, "utterance": {**r["utterance"], "id": "../../x"}}
                  if r["utterance"]["id"] == "pos01" else r)
    before = tree(sandbox)
    result = invoke("export-frames", cache, "--out", sandbox / "deep" / "frames")
    no_traceback(result)
    assert result.exit_code != 0
    assert "../../x" in result.output and "index.jsonl" in result.output
    assert tree(sandbox) == before  # nothing written anywhere, inside or outside --out


def test_export_frames_refuses_two_ids_sharing_a_file(demo_workspace, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(demo_workspace / "cache", cache)
    rewrite_index(cache, lambda r: {**r, "utterance": {**r["utterance"], "id": "POS01"}}
                  if r["utterance"]["id"] == "pos02" else r)
    result = invoke("export-frames", cache, "--out", tmp_path / "frames")
    no_traceback(result)
    assert result.exit_code != 0 and "share one output" in result.output
    assert not list((tmp_path / "frames").glob("*.csv"))


def test_a_cache_key_read_from_the_index_never_becomes_a_path(demo_workspace, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(demo_workspace / "cache", cache)
    rewrite_index(cache, lambda r: {**r, "record": {**r["record"], "key": "../../../outside"}})
    from cmbert_pipe.cache import FeatureCache

    with pytest.raises(CacheError, match="bad cache key"):
        FeatureCache(cache).read_index()
    result = invoke("train", cache, "--out", tmp_path / "model", "--seeds", "1")
    no_traceback(result)
    assert result.exit_code != 0 and "bad cache key" in result.output


def test_align_manifest_with_traversing_ids_writes_nothing_outside(tmp_path):
    sandbox = tmp_path / "sandbox"
    (sandbox / "in").mkdir(parents=True)
    manifest = sandbox / "in" / "m.csv"
    manifest.write_text(
        "id,audio,transcript\n"
        f"../../escaped,{DEMO / 'pos01.flac'},I really loved this movie\n"
        f"/tmp/abs,{DEMO / 'pos01.flac'},I really loved this movie\n", encoding="utf-8")
    before = tree(sandbox)
    result = invoke("align", manifest, "--out", sandbox / "in" / "out")
    no_traceback(result)
    assert result.exit_code == 1
    summary = json.loads((sandbox / "in" / "out" / "summary.json").read_text())
    assert len(summary["failures"]) == 2
    reasons = sorted(f["reason"] for f in summary["failures"])
    assert any("'..' path part" in r for r in reasons), reasons
    assert any("absolute path" in r for r in reasons), reasons
    after = tree(sandbox)
    new = {p for p in after if p not in before}
    assert all(p.startswith(os.path.join("in", "out")) for p in new), new


# -- 6: no traceback, whatever goes wrong ----------------------------------------------------

def _broken_bundle(demo_workspace, tmp_path, name: str, content: str) -> Path:
    bundle = tmp_path / "bundle"
    shutil.copytree(demo_workspace / "model" / "seed-0", bundle)
    (bundle / name).write_text(content, encoding="utf-8")
    sums = json.loads((bundle / "checksums.json").read_text())
    sums[name] = file_digest(bundle / name)  # as if a buggy writer had made it: checksum agrees
    (bundle / "checksums.json").write_text(json.dumps(sums))
    return bundle


@pytest.mark.parametrize("name,content", [
    ("config.json", "[]"),
    ("config.json", '{"model": 5}'),
    ("audio_stats.json", '{"mean": "x"}'),
    ("encoder_config.json", "null"),
    ("settings.json", "[1, 2]"),
])
def test_malformed_bundle_files_give_one_line_not_a_traceback(demo_workspace, tmp_path, name,
                                                              content):
    bundle = _broken_bundle(demo_workspace, tmp_path, name, content)
    result = invoke("predict", DEMO / "pos01.flac", "--text", "I really loved this movie",
                    "--model", bundle)
    no_traceback(result)
    assert result.exit_code != 0
    assert "error" in result.output and name in result.output


def test_unexpected_error_names_the_step_and_debug_shows_the_traceback(demo_workspace,
                                                                       tmp_path):
    bundle = _broken_bundle(demo_workspace, tmp_path, "config.json", "[]")
    plain = invoke("predict", DEMO / "pos01.flac", "--text", "hi", "--model", bundle)
    no_traceback(plain)
    debug = invoke("--debug", "predict", DEMO / "pos01.flac", "--text", "hi", "--model", bundle)
    assert debug.exit_code == plain.exit_code != 0
    assert "Traceback" in debug.output or "traceback" in debug.output.lower()


def test_markup_and_control_characters_in_paths_print_safely(tmp_path):
    odd = tmp_path / "[/]bad[bold]\x1b[31mname"
    result = invoke("export-frames", odd, "--out", tmp_path / "o")
    no_traceback(result)
    assert result.exit_code == 2
    assert "[/]bad[bold]" in result.output and "\x1b" not in result.output


# -- 10: a bundle detects flipped bytes ----------------------------------------------------------

def test_a_flipped_weight_byte_is_refused_on_load(demo_workspace, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(demo_workspace / "model" / "seed-0", bundle)
    weights = bundle / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit inside a tensor: safetensors itself would not notice
    weights.write_bytes(bytes(data))
    result = invoke("predict", DEMO / "pos01.flac", "--text", "I really loved this movie",
                    "--model", bundle)
    no_traceback(result)
    assert result.exit_code == 2
    assert "model.safetensors" in result.output and "checksum" in result.output


def test_outputs_follow_the_umask(demo_workspace, tmp_path):
    # the session workspace was written under the test process's umask
    mask = os.umask(0o022)
    os.umask(mask)
    for path in [demo_workspace / "align" / "pos01.TextGrid",
                 demo_workspace / "align" / "pos01.align.json",
                 demo_workspace / "cache" / "index.jsonl",
                 next((demo_workspace / "cache" / "entries").rglob("*.npz")),
                 demo_workspace / "model" / "summary.json",
                 demo_workspace / "model" / "seed-0" / "model.safetensors"]:
        assert path.stat().st_mode & 0o777 == 0o666 & ~mask, path
    assert (demo_workspace / "model" / "seed-0").stat().st_mode & 0o777 == 0o777 & ~mask
    old = os.umask(0o027)
    try:
        result = invoke("export-frames", demo_workspace / "cache", "--out", tmp_path / "f")
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "f" / "pos01.csv").stat().st_mode & 0o777 == 0o640


# -- 10: transcripts in other encodings; numbers read as people read them --------------------

@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32", "utf-8-sig"])
def test_transcripts_with_a_byte_order_mark_are_read(tmp_path, encoding):
    from cmbert_pipe.corpus import read_transcript

    path = tmp_path / "t.txt"
    data = "I really loved this café".encode(encoding)
    if encoding == "utf-16-be":
        data = b"\xfe\xff" + data
    path.write_bytes(data)
    assert read_transcript(path) == "I really loved this café"


def test_utf16_transcript_aligns_and_binary_is_refused(tmp_path):
    transcript = tmp_path / "pos01.txt"
    transcript.write_text("I really loved this movie", encoding="utf-16")
    result = invoke("align", DEMO / "pos01.flac", transcript, "--out", tmp_path / "a")
    assert result.exit_code == 0, result.output
    from cmbert_pipe.align.textgrid import read_textgrid

    words = [w.word for w in read_textgrid(tmp_path / "a" / "pos01.TextGrid").words]
    assert words == ["I", "really", "loved", "this", "movie"]
    binary = tmp_path / "pos01.lab"
    binary.write_bytes(bytes(range(256)) * 4)
    result = invoke("align", DEMO / "pos01.flac", binary, "--out", tmp_path / "b")
    no_traceback(result)
    assert result.exit_code == 1 and "not text" in result.output


def test_prices_and_grouped_numbers_are_read_as_people_read_them():
    from cmbert_pipe.align.normalize import spoken_words

    def parts(text):
        return [p for w in spoken_words(text) for p in w.parts]

    assert parts("$5.99") == ["five", "dollars", "ninety", "nine"]
    assert parts("1,250") == ["one", "thousand", "two", "hundred", "fifty"]
    assert parts("$1") == ["one", "dollar"]
    assert parts("$0.50") == ["fifty", "cents"]
    assert parts("1998") == ["nineteen", "ninety", "eight"]  # a bare 4-digit year stays a year


# -- 3: stale alignments are refused with the reason ----------------------------------------

@pytest.mark.parametrize("old_sidecar", [False, True])
def test_extract_refuses_an_alignment_made_for_other_audio(demo_workspace, tmp_path,
                                                           old_sidecar):
    import soundfile as sf

    align = tmp_path / "align"
    shutil.copytree(demo_workspace / "align", align)
    if old_sidecar:  # sidecars written before they carried the audio digest
        for side in align.glob("*.align.json"):
            d = json.loads(side.read_text())
            d.pop("audio_sha256", None)
            side.write_text(json.dumps(d))
    wave, sr = sf.read(DEMO / "pos01.flac")
    sf.write(tmp_path / "pos01.flac", wave[int(0.8 * sr):], sr)  # the user trimmed 0.8 s
    shutil.copy(DEMO / "pos02.flac", tmp_path / "pos02.flac")  # unchanged
    manifest = tmp_path / "m.csv"
    manifest.write_text("id,audio,transcript\n"
                        "pos01,pos01.flac,I really loved this movie\n"
                        "pos02,pos02.flac,The acting was wonderful and funny\n", encoding="utf-8")
    result = invoke("extract-audio", manifest, "--alignments", align, "--out", tmp_path / "c",
                    "--features", "egemaps")
    no_traceback(result)
    assert result.exit_code == 1
    assert "stale" in result.output and "audio" in result.output
    summary = json.loads((tmp_path / "c" / "extract_summary.json").read_text())
    assert summary["done"] == 1 and [f["item_id"] for f in summary["failures"]] == ["pos01"]


# -- 5: an unwritable output fails before the work ---------------------------------------------

@pytest.fixture()
def readonly_dir(tmp_path):
    """A folder this process cannot create files in: a 0555 folder, or (as root, for whom
    modes do not apply) /sys/fs, which the kernel keeps read-only even for root."""
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        yield ro
        ro.chmod(0o755)
        return
    import tempfile

    try:
        with tempfile.TemporaryFile(dir="/sys/fs"):
            pass
    except OSError:
        yield Path("/sys/fs")
    else:  # pragma: no cover - an unusual container
        pytest.skip("running as root and found no read-only folder")


def test_readonly_out_is_refused_before_any_work(demo_workspace, readonly_dir, tmp_path):
    manifest = DEMO / "manifest.csv"
    cases = [
        ["align", manifest, "--out", readonly_dir],
        ["extract-audio", manifest, "--alignments", demo_workspace / "align", "--out",
         readonly_dir, "--features", "egemaps"],
        ["predict", DEMO, "--model", demo_workspace / "model" / "seed-0", "--out",
         readonly_dir / "predictions.csv"],
        ["train", demo_workspace / "cache", "--out", readonly_dir, "--seeds", "1",
         "--epochs", "1"],
        ["export-frames", demo_workspace / "cache", "--out", readonly_dir],
    ]
    for args in cases:
        result = invoke(*args)
        no_traceback(result)
        assert result.exit_code == 2, (args, result.output)
        assert "not writable" in result.output, (args, result.output)
        for sign_of_work in ("item(s)", "loading", "epoch"):  # refused before any of it
            assert sign_of_work not in result.output, (args, result.output)


def test_predict_prints_the_prediction_when_the_picture_cannot_be_written(demo_workspace,
                                                                         readonly_dir):
    result = invoke("predict", DEMO / "pos01.flac", "--text", "I really loved this movie",
                    "--model", demo_workspace / "model" / "seed-0",
                    "--attention-png", readonly_dir / "att.png")
    no_traceback(result)
    assert result.exit_code == 1
    assert "score" in result.output and "polarity" in result.output
    assert "cannot write the attention picture" in result.output


# -- 8: linked sub-folders are followed, loops reported ------------------------------------------

def test_linked_subfolders_are_followed_and_loops_reported(tmp_path):
    from cmbert_pipe.corpus import discover

    corpus, elsewhere = tmp_path / "corpus", tmp_path / "elsewhere"
    (corpus / "spk1").mkdir(parents=True)
    elsewhere.mkdir()
    shutil.copy(DEMO / "pos01.flac", corpus / "spk1" / "pos01.flac")
    (corpus / "spk1" / "pos01.txt").write_text("I really loved this movie")
    shutil.copy(DEMO / "pos02.flac", elsewhere / "pos02.flac")
    (elsewhere / "pos02.txt").write_text("The acting was wonderful and funny")
    (corpus / "spk2").symlink_to(elsewhere, target_is_directory=True)
    (corpus / "spk1" / "back").symlink_to(corpus, target_is_directory=True)  # a loop
    (corpus / "gone").symlink_to(tmp_path / "missing")
    scan = discover(corpus)
    assert sorted(u.id for u in scan.utterances) == ["spk1/pos01", "spk2/pos02"]
    reasons = {f.item_id: f.reason for f in scan.failures}
    assert "loop" in reasons["spk1/back"] and "broken link" in reasons["gone"]


# -- 9: MP3 sample 0 is the original's sample 0 -------------------------------------------------

def _lag_samples(decoded, reference, max_lag: int = 2000) -> int:
    """The shift of ``decoded`` against ``reference`` that best lines them up (samples)."""
    import numpy as np

    n = min(len(decoded), len(reference)) - max_lag
    scores = [float(np.dot(decoded[k:k + n], reference[:n])) for k in range(max_lag)]
    return int(np.argmax(scores))


@pytest.mark.parametrize("encoder,rate_hz", [
    ("libsndfile", 16_000),  # LAME inside libsndfile: gapless tag, the decoder trims itself
    ("lame", 16_000),  # 24 kbit/s MPEG-2 frames are too small for LAME's tag: none is written
    ("lame -t", 44_100),  # MPEG-1, tag switched off (as streamed or cut files are)
    ("lame", 44_100),  # MPEG-1 with the tag: must not be trimmed twice
])
def test_mp3_starts_where_the_wav_of_the_same_signal_starts(tmp_path, encoder, rate_hz):
    import subprocess

    import soundfile as sf

    from cmbert_pipe.audio import load_audio, resample

    wave = resample(load_audio(DEMO / "pos01.flac"), 16_000, rate_hz)  # a real voice
    wav = tmp_path / "clip.wav"
    sf.write(wav, wave, rate_hz, subtype="PCM_16")
    mp3 = tmp_path / "clip.mp3"
    if encoder == "libsndfile":
        sf.write(mp3, wave, rate_hz, format="MP3")
    else:
        lame = shutil.which("lame")
        if lame is None:
            pytest.skip("the lame encoder is not installed (apt-get install lame)")
        subprocess.run([lame, "--quiet", *encoder.split()[1:], str(wav), str(mp3)], check=True)
    reference, decoded = load_audio(wav), load_audio(mp3)
    assert _lag_samples(decoded, reference) <= 1  # was 1105 samples (69 ms) late
    assert abs(len(decoded) - len(reference)) < 1152  # at most the last frame's padding


# -- 1: train resume compares every setting and the data -----------------------------------------

def test_train_resume_retrains_a_seed_made_with_other_settings_or_data(demo_workspace,
                                                                       tmp_path):
    out = tmp_path / "model"
    shutil.copytree(demo_workspace / "model", out)  # seed 0: --epochs 1, cls_audio mean
    same = invoke("train", demo_workspace / "cache", "--out", out, "--seeds", "1",
                  "--epochs", "1")
    assert same.exit_code == 0, same.output
    assert "epoch 1/1" not in same.output  # current: skipped, not trained again
    summary = json.loads((out / "summary.json").read_text())
    assert summary["per_seed"]["0"].get("resumed") is True

    other = invoke("train", demo_workspace / "cache", "--out", out, "--seeds", "1",
                   "--epochs", "1", "--cls-audio", "zero")
    assert other.exit_code == 0, other.output
    assert "trained differently" in other.output and "cls_audio" in other.output
    assert "epoch 1/1" in other.output  # really trained again
    config = json.loads((out / "seed-0" / "config.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    assert config["cls_audio"] == summary["model_config"]["cls_audio"] == "zero"
    assert "cls_audio" in summary["per_seed"]["0"]["retrained_because"]

    cache = tmp_path / "cache"  # the same settings on other data: one label changed
    shutil.copytree(demo_workspace / "cache", cache)
    rewrite_index(cache, lambda r: {**r, "utterance": {**r["utterance"], "label": -3.0}}
                  if r["utterance"]["id"] == "pos01" else r)
    data = invoke("train", cache, "--out", out, "--seeds", "1", "--epochs", "1",
                  "--cls-audio", "zero")
    assert data.exit_code == 0, data.output
    assert "training data" in data.output and "epoch 1/1" in data.output


# -- 10: every command has the length limit, and the refusal names an option it has ------------

def test_over_long_recordings_are_refused_naming_an_option_the_command_has(demo_workspace,
                                                                           tmp_path):
    import numpy as np
    import soundfile as sf

    long_wav = tmp_path / "pos01.wav"  # 301 s: refused from the header, never decoded
    rng = np.random.default_rng(0)
    with sf.SoundFile(long_wav, "w", 8000, 1, subtype="PCM_16") as fh:
        for _ in range(301):
            fh.write((0.1 * rng.standard_normal(8000)).astype(np.float32))
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"id,audio,transcript\npos01,{long_wav},{'I really loved this movie'}\n",
                        encoding="utf-8")
    (tmp_path / "align").mkdir()  # a TextGrid dropped in without a sidecar (as from MFA)
    shutil.copy(demo_workspace / "align" / "pos01.TextGrid", tmp_path / "align")
    extract = invoke("extract-audio", manifest, "--alignments", tmp_path / "align",
                     "--out", tmp_path / "cache", "--features", "egemaps")
    predict = invoke("predict", long_wav, "--text", "I really loved this movie", "--model",
                     demo_workspace / "model" / "seed-0")
    for command, result in (("extract-audio", extract), ("predict", predict)):
        no_traceback(result)
        assert result.exit_code != 0 and "301 s long" in result.output, result.output
        assert "--max-duration" in result.output
        help_text = invoke(command, "--help").output
        assert "--max-duration" in help_text, command  # the option the message names exists
