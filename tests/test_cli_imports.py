"""`cmbert --help` (and a command's --help) must not import torch or transformers: they cost
seconds of start-up, and the CLI imports them only inside the commands that need them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers")

# Runs the real entry point (cmbert_pipe.cli:main) with the given argv, then reports which of
# the heavy modules ended up in sys.modules.
_PROBE = """
import json, sys
sys.argv = ["cmbert", *json.loads(sys.argv[1])]
from cmbert_pipe.cli import main
code = 0
try:
    main()
except SystemExit as e:
    code = e.code or 0
print(json.dumps({"code": code, "loaded": sorted(m for m in HEAVY if m in sys.modules)}))
""".replace("HEAVY", repr(HEAVY))


def _probe(argv: list[str]) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    res = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(argv)],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(REPO),
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "argv", [["--help"], ["predict", "--help"], ["extract-audio", "--help"], ["train", "--help"]]
)
def test_help_imports_neither_torch_nor_transformers(argv):
    r = _probe(argv)
    assert r["code"] == 0
    assert r["loaded"] == [], f"cmbert {' '.join(argv)} imported {r['loaded']}"


def test_the_probe_sees_an_import_when_there_is_one():
    # the same probe on a command path that does load torch (the model registry): the check
    # above is not vacuous
    env = dict(os.environ, PYTHONPATH=str(REPO))
    code = "import sys, cmbert_pipe.model; print(int('torch' in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.stdout.strip() == "1", out.stderr
