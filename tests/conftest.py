"""Shared fixtures: the real data beside the repository (../shared/data), tiny real clips."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CMBERT_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (override with CMBERT_SHARED_DATA); skip if it is not there."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # pragma: no cover
        has_cuda = False
    if not has_cuda:
        skip = pytest.mark.skip(reason="needs a CUDA device")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def demo_workspace(tmp_path_factory) -> Path:
    """The embedded demo corpus aligned (pocketsphinx), extracted (eGeMAPS, frames kept) and a
    one-seed, one-epoch model trained on it, through the real CLI, once per session:
    ``WS/align``, ``WS/cache``, ``WS/model/seed-0``. Tests copy what they modify."""
    from typer.testing import CliRunner

    from cmbert_pipe.cli import app

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ws = tmp_path_factory.mktemp("demo-ws")
    manifest = REPO / "assets" / "demo" / "manifest.csv"
    runner = CliRunner()
    for args in (["align", str(manifest), "--out", str(ws / "align"), "--jobs", "2"],
                 ["extract-audio", str(manifest), "--alignments", str(ws / "align"),
                  "--out", str(ws / "cache"), "--features", "egemaps", "--frames"],
                 ["train", str(ws / "cache"), "--out", str(ws / "model"), "--seeds", "1",
                  "--epochs", "1"]):
        result = runner.invoke(app, args)
        # align may refuse a clip or two whose words fit the sound poorly (listed, exit 1)
        assert result.exit_code in ((0, 1) if args[0] != "train" else (0,)), \
            (args, result.output)
    for uid in ("pos01", "pos02"):  # the clips the tests use
        assert (ws / "align" / f"{uid}.TextGrid").is_file()
    return ws
