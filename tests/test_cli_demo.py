"""End to end, for real: `cmbert demo` on the embedded corpus (eGeMAPS features and a short
training run to stay within CI time), then the same run again (every stage current), then
`cmbert predict` on the trained bundle: one clip as JSON with its picture, a corpus as CSV."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cmbert_pipe.cli import app

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "assets" / "demo"
FAST = ["--set", "features.feature_set=egemaps", "--set", "train.epochs=2"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    result = CliRunner().invoke(app, ["demo", "--out", str(out), *FAST])
    return out, result


def _finished(result, out: Path) -> dict:
    """The run finished: exit 0, or exit 1 with every failed item listed in the report."""
    report = json.loads((out / "report.json").read_text())
    assert result.exit_code == (1 if report["failures"] else 0), result.output
    for f in report["failures"]:
        assert f["item_id"] in (out / "report.md").read_text()
    return report


def test_demo_runs_every_stage_and_reports(demo_run):
    out, result = demo_run
    for stage in ("corpus", "align", "extract", "train", "predict", "report"):
        assert stage in result.output
    report = _finished(result, out)
    stages = {s["name"]: s for s in report["stages"]}
    aligned = stages["align"]["summary"]["done"]
    assert aligned + stages["align"]["summary"]["failed"] == 26
    assert aligned >= 20  # the demo voices were chosen so that the aligner places them
    assert stages["extract"]["summary"]["done"] == aligned
    for split in ("train", "dev", "test"):
        m = report["metrics"][split]
        assert 0.0 <= m["acc2_non0"]["mean"] <= 1.0 and m["mae"]["mean"] >= 0.0
    md = (out / "report.md").read_text()
    refused = {f["item_id"] for f in report["failures"]}
    manifest = (DEMO / "manifest.csv").read_text().splitlines()[1:]
    n_test = sum(1 for row in manifest
                 if row.split(",")[4] == "test" and row.split(",")[0] not in refused)
    assert f"| test | {n_test} |" in md and "acc2_non0" in md
    # the audio-only baseline beside the model, on the same seeds (TrainConfig.baselines)
    base = report["baselines"]["audio"]["test"]
    assert 0.0 <= base["acc2_non0"]["mean"] <= 1.0
    assert "## Beside its baselines (test split, same seeds)" in md and "| audio baseline |" in md
    pred = report["prediction"]
    assert pred["utterance_id"] == "pos09" and -3 <= pred["score"] <= 3
    assert [w["word"] for w in pred["words"]] == ["I", "would", "gladly", "watch", "it", "again"]
    png = Path(report["attention_png"])
    assert png.read_bytes()[:4] == b"\x89PNG"
    bundle = out / "model" / "seed-0"
    settings = json.loads((bundle / "settings.json").read_text())
    assert settings["feature_set"] == "egemaps" and settings["aligner"]["name"] == "pocketsphinx"
    effective = (out / "pipeline.toml").read_text()
    assert 'feature_set = "egemaps"' in effective and "epochs = 2" in effective


def test_demo_again_skips_every_current_stage(demo_run):
    out, first = demo_run
    before = {s["name"]: s for s in _finished(first, out)["stages"]}
    mtime = (out / "model" / "seed-0" / "model.safetensors").stat().st_mtime_ns
    result = CliRunner().invoke(app, ["demo", "--out", str(out), *FAST])
    stages = {s["name"]: s for s in _finished(result, out)["stages"]}
    # what was aligned and extracted is current; only items that failed are tried again
    assert stages["align"]["summary"]["skipped"] == before["align"]["summary"]["done"]
    assert stages["extract"]["summary"]["skipped"] == before["extract"]["summary"]["done"]
    assert stages["extract"]["summary"]["done"] == 0
    assert stages["train"]["status"] == "current"
    assert (out / "model" / "seed-0" / "model.safetensors").stat().st_mtime_ns == mtime


def test_predict_cli_json_and_picture(demo_run, tmp_path):
    out, first = demo_run
    _finished(first, out)
    png = tmp_path / "att.png"
    result = CliRunner().invoke(app, ["predict", str(DEMO / "neg09.flac"), "--text",
                                      "I would never watch it again", "--model",
                                      str(out / "model" / "seed-0"), "--json",
                                      "--attention-png", str(png)])
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout[result.stdout.index("{"):])
    assert -3 <= d["score"] <= 3 and d["polarity"] in ("positive", "negative")
    assert len(d["words"]) == 6 and d["words"][0]["multimodal"] is not None
    assert png.read_bytes()[:4] == b"\x89PNG"
    table = CliRunner().invoke(app, ["predict", str(DEMO / "neg09.flac"), "--text",
                                     "I would never watch it again", "--model",
                                     str(out / "model" / "seed-0")])
    assert table.exit_code == 0 and "W_m [CLS] row" in table.stdout and "never" in table.stdout


def test_predict_cli_batch_reports_bad_items_and_scores_the_rest(demo_run, tmp_path):
    out, first = demo_run
    _finished(first, out)
    (tmp_path / "broken.wav").write_bytes(b"not audio")
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "id,audio,transcript\n"
        f"a,{DEMO / 'pos10.flac'},A truly good and lovely film\n"
        "b,broken.wav,hello there\n"
        f"c,{DEMO / 'neg10.flac'},A truly bad and ugly film\n")
    preds = tmp_path / "preds.csv"
    result = CliRunner().invoke(app, ["predict", str(manifest), "--model",
                                      str(out / "model" / "seed-0"), "--out", str(preds)])
    assert result.exit_code == 1, result.output  # one item failed
    assert "1 failed" in result.output
    lines = preds.read_text().splitlines()
    assert len(lines) == 3 and {ln.split(",")[0] for ln in lines[1:]} == {"a", "c"}
    summary = json.loads((tmp_path / "preds.summary.json").read_text())
    assert summary["failed"] == 1 and summary["done"] == 2
    assert summary["failures"][0]["item_id"] == "b"
    assert summary["failures"][0]["path"].endswith("broken.wav")


def test_run_rejects_unknown_key_by_name(tmp_path):
    result = CliRunner().invoke(app, ["run", str(REPO / "pipelines" / "demo.toml"), "--set",
                                      "train.epoch=1", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "train.epoch" in result.output
