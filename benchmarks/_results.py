"""Write a benchmark's figures to ``results/<name>.md`` (and ``.json``), stamped so that any
figure quoted in the README can be traced to the command, commit, date and machine behind it.

    from _results import write_result
    write_result("covarep_speed", body_markdown, data={"cpu_s_per_audio_s": 0.07})

The stamp records: the exact command line, the git commit (with ``+dirty`` when the tree had
uncommitted changes), the UTC date, and the machine (cores, 1-minute load average at the start
and at the end, CPU model, Python and torch versions when torch is loaded). Load matters on a
shared 2-core machine: wall times are inflated by it, ratios measured in the same run are not.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "results"
_LOAD_AT_IMPORT = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def stamp() -> dict[str, Any]:
    """Where, when and how a result was produced."""
    commit = _git("rev-parse", "--short=12", "HEAD") or "unknown"
    if _git("status", "--porcelain", "--untracked-files=no"):
        commit += "+dirty"
    versions = {"python": platform.python_version()}
    if "torch" in sys.modules:
        versions["torch"] = sys.modules["torch"].__version__
    return {
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "commit": commit,
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {
            "cores": os.cpu_count(),
            "cpu": _cpu_model(),
            "load_1min_start": round(_LOAD_AT_IMPORT, 2),
            "load_1min_end": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
            **versions,
        },
    }


def write_result(name: str, body_markdown: str, data: dict[str, Any] | None = None,
                 title: str | None = None) -> Path:
    """Write ``results/<name>.md`` (stamp + body) and ``results/<name>.json`` (stamp + data).

    Returns the Markdown path. ``body_markdown`` is the table(s) and a sentence of reading;
    ``data`` the same figures in machine-readable form.
    """
    RESULTS_DIR.mkdir(exist_ok=True)
    s = stamp()
    m = s["machine"]
    header = [
        f"# {title or name}",
        "",
        f"- command: `{s['command']}`",
        f"- commit: `{s['commit']}`",
        f"- date: {s['date_utc']}",
        f"- machine: {m['cores']} cores ({m['cpu']}), load {m['load_1min_start']} → "
        f"{m['load_1min_end']}, Python {m['python']}"
        + (f", torch {m['torch']}" if "torch" in m else ""),
        "",
        "Written by the benchmark itself; re-run the command to reproduce.",
        "",
    ]
    md = RESULTS_DIR / f"{name}.md"
    md.write_text("\n".join(header) + body_markdown.rstrip() + "\n", encoding="utf-8")
    (RESULTS_DIR / f"{name}.json").write_text(
        json.dumps({"stamp": s, "data": data or {}}, indent=2, default=str) + "\n",
        encoding="utf-8")
    return md


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    """A GitHub Markdown table; floats keep the formatting the caller gave them as strings."""
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out) + "\n"
