"""Every command fed hostile inputs through the real CLI: ids that climb out of the output folder
or are absolute, NUL and other odd characters, huge / negative / NaN numbers, transcripts in
UTF-16 / Latin-1 / binary, malformed manifests, caches and bundle files, outputs that are files
or read-only. For each: no traceback, a non-zero exit with a message, and nothing written in
the sandbox outside the output the command was given."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cmbert_pipe.cli import app

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "assets" / "demo"
POS01 = "I really loved this movie"
POS02 = "The acting was wonderful and funny"


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` with (size, mtime_ns); folders have size -1."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            out[os.path.relpath(p, root)] = (-1 if name in dirnames else st.st_size,
                                             st.st_mtime_ns)
    return out


@dataclass(frozen=True)
class Case:
    name: str
    args: tuple[str, ...]  # "{S}" is the sandbox, "{W}" the session's demo workspace
    out: str  # the output the command was given, relative to the sandbox ("" = none)
    may_succeed: bool = False  # the input is odd but harmless here (ids that name no file)


@pytest.fixture()
def sandbox(tmp_path, demo_workspace) -> Path:
    """Hostile inputs, all inside one folder whose tree is compared before and after."""
    s = tmp_path / "sandbox"
    inp = s / "in"
    inp.mkdir(parents=True)
    shutil.copy(DEMO / "pos01.flac", inp / "pos01.flac")
    shutil.copy(DEMO / "pos02.flac", inp / "pos02.flac")
    (inp / "pos01.txt").write_text(POS01, encoding="utf-8")
    (inp / "utf16_nobom.txt").write_bytes(POS01.encode("utf-16-le"))
    (inp / "latin1.txt").write_bytes("I really loved this café".encode("latin-1"))
    (inp / "binary.txt").write_bytes(bytes(range(256)) * 8)
    (inp / "binary.wav").write_bytes(b"RIFF\xff\xff\xff\x7fWAVEjunk" + os.urandom(2000))
    (inp / "huge_text.txt").write_text(" ".join(["really"] * 20000), encoding="utf-8")
    (inp / "punct.txt").write_text("... --- !!! ♪ ♪", encoding="utf-8")
    (inp / "a_file").write_text("not a folder", encoding="utf-8")
    audio = str(inp / "pos01.flac")
    manifests = {
        "ids.csv": "id,audio,transcript\n"
                   f"../../escaped,{audio},{POS01}\n"
                   f"{s}/absolute,{audio},{POS01}\n"
                   f"spk/../../up,{audio},{POS01}\n"
                   f"back\\slash,{audio},{POS01}\n"
                   f"[/]markup[bold],{audio},{POS01}\n",
        "nul.csv": f"id,audio,transcript\nnul\x00id,{audio},{POS01}\n",
        "labels.csv": "id,audio,transcript,label\n"
                      f"a,{audio},{POS01},nan\nb,{audio},{POS01},1e999\nc,{audio},{POS01},x\n",
        "encodings.csv": "id,audio,transcript\n"
                         f"u16,{audio},{inp / 'utf16_nobom.txt'}\n"
                         f"bin,{audio},{inp / 'binary.txt'}\n"
                         f"punct,{audio},{inp / 'punct.txt'}\n",
        "nocols.csv": "name,file\nx,y\n",
    }
    for name, text in manifests.items():
        (inp / name).write_text(text, encoding="utf-8")
    (inp / "binary.csv").write_bytes(os.urandom(4096))
    cache = s / "cache"
    shutil.copytree(demo_workspace / "cache", cache)
    lines = (cache / "index.jsonl").read_text(encoding="utf-8").splitlines()
    bad_rows = []
    for i, line in enumerate(lines[:2]):
        d = json.loads(line)
        d["utterance"]["id"] = ["../../escaped", "/etc/passwd"][i]
        bad_rows.append(json.dumps(d))
    (s / "cache_ids").mkdir()
    shutil.copytree(cache, s / "cache_ids", dirs_exist_ok=True)
    (s / "cache_ids" / "index.jsonl").write_text("\n".join(bad_rows) + "\n", encoding="utf-8")
    (s / "cache_garbage").mkdir()
    (s / "cache_garbage" / "cache.json").write_bytes(os.urandom(300))
    (s / "cache_garbage" / "index.jsonl").write_bytes(b"\x00\xff" * 200)
    bundle = s / "bundle"
    shutil.copytree(demo_workspace / "model" / "seed-0", bundle)
    (bundle / "model.safetensors").write_bytes(b"\x00" * 64)
    (bundle / "checksums.json").unlink(missing_ok=True)  # an old-style bundle: the weights are read as-is
    (inp / "recipe.toml").write_bytes(b"\x00\xff[[[ = = \n" + os.urandom(100))
    (inp / "recipe_keys.toml").write_text('name = "x"\n[train]\nbatch_size = -3\nnope = 1\n',
                                          encoding="utf-8")
    return s


ALIGN = [
    Case("align-hostile-ids", ("align", "{S}/in/ids.csv", "--out", "{S}/out"), "out"),
    Case("align-nul-in-manifest", ("align", "{S}/in/nul.csv", "--out", "{S}/out"), "out"),
    Case("align-binary-manifest", ("align", "{S}/in/binary.csv", "--out", "{S}/out"), "out"),
    Case("align-manifest-columns", ("align", "{S}/in/nocols.csv", "--out", "{S}/out"), "out"),
    Case("align-bad-labels", ("align", "{S}/in/labels.csv", "--out", "{S}/out"), "out"),
    Case("align-encodings", ("align", "{S}/in/encodings.csv", "--out", "{S}/out"), "out"),
    Case("align-binary-audio", ("align", "{S}/in/binary.wav", "{S}/in/pos01.txt", "--out",
                                "{S}/out"), "out"),
    Case("align-huge-transcript", ("align", "{S}/in/pos01.flac", "{S}/in/huge_text.txt",
                                   "--out", "{S}/out"), "out"),
    Case("align-nan-duration", ("align", "{S}/in/ids.csv", "--out", "{S}/out",
                                "--max-duration", "nan"), "out"),
    Case("align-negative-jobs", ("align", "{S}/in/ids.csv", "--out", "{S}/out", "--jobs",
                                 "-3"), "out"),
    Case("align-out-is-a-file", ("align", "{S}/in/ids.csv", "--out", "{S}/in/a_file"), ""),
    Case("align-missing-corpus", ("align", "{S}/in/nowhere\x01.csv", "--out", "{S}/out"), "out"),
]
EXTRACT = [
    Case("extract-hostile-ids", ("extract-audio", "{S}/in/ids.csv", "--alignments",
                                 "{W}/align", "--out", "{S}/out"), "out"),
    Case("extract-encodings", ("extract-audio", "{S}/in/encodings.csv", "--alignments",
                               "{W}/align", "--out", "{S}/out"), "out"),
    Case("extract-inf-duration", ("extract-audio", "{S}/in/ids.csv", "--alignments",
                                  "{W}/align", "--out", "{S}/out", "--max-duration", "inf"), "out"),
    Case("extract-alignments-missing", ("extract-audio", "{S}/in/ids.csv", "--alignments",
                                        "{S}/nowhere", "--out", "{S}/out"), "out"),
    Case("extract-out-is-a-file", ("extract-audio", "{S}/in/ids.csv", "--alignments",
                                   "{W}/align", "--out", "{S}/in/a_file"), ""),
    Case("extract-unknown-features", ("extract-audio", "{S}/in/ids.csv", "--alignments",
                                      "{W}/align", "--out", "{S}/out", "--features",
                                      "../../etc"), "out"),
]
EXPORT = [
    Case("export-hostile-index-ids", ("export-frames", "{S}/cache_ids", "--out", "{S}/out"),
         "out"),
    Case("export-garbage-cache", ("export-frames", "{S}/cache_garbage", "--out", "{S}/out"),
         "out"),
    Case("export-not-a-cache", ("export-frames", "{S}/in", "--out", "{S}/out"), "out"),
]
TRAIN = [
    Case("train-garbage-cache", ("train", "{S}/cache_garbage", "--out", "{S}/out"), "out"),
    Case("train-hostile-index-ids", ("train", "{S}/cache_ids", "--out", "{S}/out"), "out"),
    Case("train-nan-lr", ("train", "{S}/cache", "--out", "{S}/out", "--lr-head", "nan"), "out"),
    Case("train-zero-batch", ("train", "{S}/cache", "--out", "{S}/out", "--batch-size", "0",
                              "--seeds", "1", "--epochs", "1"), "out"),
    Case("train-negative-epochs", ("train", "{S}/cache", "--out", "{S}/out", "--epochs", "-1",
                                   "--seeds", "1"), "out"),
    Case("train-huge-max-len", ("train", "{S}/cache", "--out", "{S}/out", "--max-len",
                                "100000", "--seeds", "1", "--epochs", "1"), "out"),
    Case("train-out-is-a-file", ("train", "{S}/cache", "--out", "{S}/in/a_file"), ""),
    Case("train-text-binary", ("train", "--text-only", "{S}/in", "--out", "{S}/out"), "out"),
]
PREDICT = [
    Case("predict-malformed-bundle", ("predict", "{S}/in/pos01.flac", "--text", POS01,
                                      "--model", "{S}/bundle"), ""),
    Case("predict-binary-audio", ("predict", "{S}/in/binary.wav", "--text", POS01, "--model",
                                  "{W}/model/seed-0"), ""),
    Case("predict-binary-transcript", ("predict", "{S}/in/pos01.flac", "{S}/in/binary.txt",
                                       "--model", "{W}/model/seed-0"), ""),
    Case("predict-control-characters", ("predict", "{S}/in/pos01.flac", "--text",
                                        "I \x00really\x1b[31m loved", "--model",
                                        "{W}/model/seed-0"), ""),
    Case("predict-huge-transcript", ("predict", "{S}/in/pos01.flac", "{S}/in/huge_text.txt",
                                     "--model", "{W}/model/seed-0"), ""),
    Case("predict-only-punctuation", ("predict", "{S}/in/pos01.flac", "{S}/in/punct.txt",
                                      "--model", "{W}/model/seed-0"), ""),
    Case("predict-nan-duration", ("predict", "{S}/in/pos01.flac", "--text", POS01, "--model",
                                  "{W}/model/seed-0", "--max-duration", "nan"), ""),
    Case("predict-batch-out-is-a-folder", ("predict", "{S}/in/ids.csv", "--model",
                                           "{W}/model/seed-0", "--out", "{S}/in"), ""),
    # batch predict writes ids only as CSV values, never as paths: scoring them is fine
    Case("predict-batch-hostile-ids", ("predict", "{S}/in/ids.csv", "--model",
                                       "{W}/model/seed-0", "--out", "{S}/out/p.csv"), "out",
         may_succeed=True),
]
RUN = [
    Case("run-binary-recipe", ("run", "{S}/in/recipe.toml", "--out", "{S}/out"), "out"),
    Case("run-bad-keys", ("run", "{S}/in/recipe_keys.toml", "--out", "{S}/out"), "out"),
    Case("run-nan-override", ("run", str(REPO / "pipelines" / "demo.toml"), "--out", "{S}/out",
                              "--set", "train.epochs=nan"), "out"),
    Case("run-traversing-data", ("run", str(REPO / "pipelines" / "demo.toml"), "--out",
                                 "{S}/out", "--set", "data={S}/in/ids.csv",
                                 "--set", "train.epochs=-1"), "out"),
    Case("run-out-is-a-file", ("run", str(REPO / "pipelines" / "demo.toml"), "--out",
                               "{S}/in/a_file"), ""),
]
CASES = ALIGN + EXTRACT + EXPORT + TRAIN + PREDICT + RUN


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_input(case, sandbox, demo_workspace):
    args = [a.replace("{S}", str(sandbox)).replace("{W}", str(demo_workspace))
            for a in case.args]
    before = tree(sandbox)
    result = CliRunner().invoke(app, args)
    # 1. no traceback: the command ended through its own exit
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        f"{case.name}: {result.exception!r}\n{result.output}"
    assert "Traceback" not in result.output, result.output
    # 2. a non-zero exit with a message
    if not (case.may_succeed and result.exit_code == 0):
        assert result.exit_code != 0, f"{case.name} succeeded:\n{result.output}"
        assert "error" in result.output.lower() or "failed" in result.output.lower() \
            or "invalid" in result.output.lower(), result.output
    # 3. nothing written outside the output it was given
    after = tree(sandbox)
    changed = {p for p in after if before.get(p) != after[p]} | (set(before) - set(after))
    outside = {p for p in changed
               if not case.out or not (p == case.out or p.startswith(case.out + os.sep))}
    assert not outside, f"{case.name} wrote outside its output: {sorted(outside)}"
