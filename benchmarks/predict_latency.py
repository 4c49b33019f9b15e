"""Latency of `predict` on one 4-second clip on CPU: warm (model loaded) and cold (new process),
split by stage, this tree against a base commit in the same run. Goals (issue 13): warm at most
0.3 s on one core, cold at most 3 s from the shell to the printed result.

    cmbert demo --out runs/demo                                    # makes a bundle first
    OMP_NUM_THREADS=1 python benchmarks/predict_latency.py --model runs/demo/model/seed-0
    python benchmarks/predict_latency.py --model runs/demo/model/seed-0 --base none

The clip is made from the embedded demo corpus (two synthesised sentences, padded with silence
to exactly 4.000 s), so the benchmark needs nothing outside the repository. Warm: one
:class:`~cmbert_pipe.predict.Predictor`, warmed up once, then ``--repeats`` predictions; the
median of each stage is printed. Cold: ``--cold-runs`` fresh Python processes, each importing
the package, loading the bundle and scoring the clip once; the wall time from process start
to result is split into interpreter+imports, bundle load, and the stages of the first call.
Figures are also given as real-time factors (seconds per second of audio) and as the ratio
cold / warm of the same run.

Each tree (this one, and ``--base``: a git commit unpacked with ``git archive``, default the last
commit before the issue-13 speed work) is measured in its own processes, alternating, so both
see the same load: warm per-stage medians, the whole-command cold time of
``cmbert predict CLIP --text ... --model M --json`` and of ``cmbert --help`` from a fresh shell
process (median of ``--cold-runs``), whether ``--help`` imported torch, batch scoring of the
embedded demo corpus (``predict_corpus``, one loaded model: clips per second), and the peak
resident memory (VmHWM) of the warm process. Every figure is printed as base, this tree and
their ratio, and written to ``results/predict_latency.md`` / ``.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

T_START = time.perf_counter()

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "assets" / "demo"
CLIP_S = 4.0  # s
PARTS = (
    ("pos02", "The acting was wonderful and funny"),
    ("pos09", "I would gladly watch it again"),
)
STAGES = ("load_s", "align_s", "features_s", "model_s")  # wall time
BASE_COMMIT = "a36a52c"  # main before the issue-13 speed work
CPU_STAGES = tuple(k.replace("_s", "_cpu_s") for k in STAGES)  # CPU time, all threads


def make_clip(folder: Path) -> tuple[Path, str]:
    """Two demo sentences, 0.2 s apart, zero-padded to CLIP_S seconds (16 kHz WAV)."""
    import numpy as np
    import soundfile as sf

    from cmbert_pipe.audio import load_audio
    from cmbert_pipe.schema import SAMPLE_RATE

    gap = np.zeros(int(0.2 * SAMPLE_RATE), np.float32)
    pieces = []
    for uid, _ in PARTS:
        pieces += [load_audio(DEMO / f"{uid}.flac"), gap]
    wave = np.concatenate(pieces)
    n = int(CLIP_S * SAMPLE_RATE)
    if len(wave) > n:
        raise SystemExit(f"the demo sentences last {len(wave) / SAMPLE_RATE:.2f} s > {CLIP_S} s")
    wave = np.pad(wave, (0, n - len(wave)))
    path = folder / "clip4s.wav"
    sf.write(path, wave, SAMPLE_RATE, subtype="PCM_16")
    return path, " ".join(text for _, text in PARTS)


def cold_child(model: str, clip: str, text: str) -> None:
    """Run in a fresh process: import, load, predict once; print JSON timings."""
    t0 = time.perf_counter()
    import torch

    from cmbert_pipe.predict import Predictor

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    t1, c1 = time.perf_counter(), time.process_time()
    predictor = Predictor.from_pretrained(model)
    t2, c2 = time.perf_counter(), time.process_time()
    p = predictor.predict(clip, text)
    t3, c3 = time.perf_counter(), time.process_time()
    print(
        json.dumps(
            {
                "imports_s": t1 - t0,
                "bundle_s": t2 - t1,
                "first_call_s": t3 - t2,
                "imports_cpu_s": c1,
                "bundle_cpu_s": c2 - c1,
                "first_call_cpu_s": c3 - c2,
                **p.timings_s,
                "score": p.score,
            }
        )
    )


def warm_child(model: str, clip: str, text: str, repeats: int) -> None:
    """In a fresh process of one tree: warm per-stage medians, batch clips/s, VmHWM (JSON)."""
    import torch

    from cmbert_pipe.corpus import discover
    from cmbert_pipe.predict import Predictor, predict_corpus

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    predictor = Predictor.from_pretrained(model)
    predictor.warm_up()
    runs = []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        p = predictor.predict(clip, text)
        runs.append(
            dict(
                p.timings_s, total_s=time.perf_counter() - t0, total_cpu_s=time.process_time() - c0
            )
        )
    warm = {
        k: statistics.median(r[k] for r in runs)
        for k in (*STAGES, *CPU_STAGES, "total_s", "total_cpu_s")
    }
    scan = discover(DEMO / "manifest.csv")
    with tempfile.TemporaryDirectory() as tmp:
        t0, c0 = time.perf_counter(), time.process_time()
        summary = predict_corpus(predictor, scan.utterances, Path(tmp) / "pred.csv")
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    with open("/proc/self/status") as fh:
        hwm = next(int(x.split()[1]) for x in fh if x.startswith("VmHWM:")) / 1024
    print(
        json.dumps(
            {
                "warm": warm,
                "batch_clips": summary.done,
                "batch_wall_s": wall,
                "batch_cpu_s": cpu,
                "hwm_mb": hwm,
                "feature_set": predictor.feature_set,
                "aligner": predictor.aligner_name,
            }
        )
    )


def _run_json(cmd: list[str], env: dict) -> dict:
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _shell_wall(cmd: list[str], env: dict) -> tuple[float, float]:
    """(wall s, CPU s of the child process: user + system, all threads) of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} ... failed:\n{res.stderr[-3000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


_HELP_PROBE = (
    "import sys\nsys.argv = ['cmbert', '--help']\nfrom cmbert_pipe.cli import main\n"
    "try:\n    main()\nexcept SystemExit:\n    pass\n"
    "print('HEAVY', sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
)


def main() -> None:
    from _results import markdown_table, write_result

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=str(REPO / "runs" / "demo" / "model" / "seed-0"))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--cold-runs", type=int, default=3)
    ap.add_argument("--base", default=BASE_COMMIT, help="git commit to compare with, or 'none'")
    ap.add_argument("--cold-child", nargs=2, metavar=("CLIP", "TEXT"), help=argparse.SUPPRESS)
    ap.add_argument("--warm-child", nargs=2, metavar=("CLIP", "TEXT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.cold_child:
        cold_child(args.model, *args.cold_child)
        return
    if args.warm_child:
        warm_child(args.model, *args.warm_child, args.repeats)
        return
    if not (Path(args.model) / "config.json").is_file():
        raise SystemExit(f"no model bundle at {args.model}: run `cmbert demo --out runs/demo`")
    model = str(Path(args.model).resolve())
    tmp = Path(tempfile.mkdtemp(prefix="cmbert-latency-"))
    clip, text = make_clip(tmp)
    trees = {"this tree": REPO}
    if args.base.lower() != "none":
        base = tmp / "base"
        base.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", args.base, "cmbert_pipe"],
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
        trees = {"base": base, "this tree": REPO}
    envs = {
        k: dict(
            os.environ, PYTHONPATH=str(t), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1")
        )
        for k, t in trees.items()
    }
    cmbert = str(Path(sys.executable).parent / "cmbert")
    res: dict[str, dict] = {
        k: {"cold_predict": [], "cold_help": [], "cold_split": []} for k in trees
    }
    for k in trees:  # warm + batch, one process per tree
        res[k].update(
            _run_json(
                [
                    sys.executable,
                    __file__,
                    "--model",
                    model,
                    "--repeats",
                    str(args.repeats),
                    "--warm-child",
                    str(clip),
                    text,
                ],
                envs[k],
            )
        )
        heavy = (
            subprocess.run(
                [sys.executable, "-c", _HELP_PROBE], capture_output=True, text=True, env=envs[k]
            )
            .stdout.strip()
            .splitlines()
        )
        res[k]["help_imports_heavy"] = heavy[-1] if heavy else "?"
    for _ in range(args.cold_runs):  # alternate the trees: both see the same load
        for k in trees:
            res[k]["cold_predict"].append(
                _shell_wall(
                    [cmbert, "predict", str(clip), "--text", text, "--model", model, "--json"],
                    envs[k],
                )
            )
            res[k]["cold_help"].append(_shell_wall([cmbert, "--help"], envs[k]))
            res[k]["cold_split"].append(
                _run_json(
                    [sys.executable, __file__, "--model", model, "--cold-child", str(clip), text],
                    envs[k],
                )
            )
    rows, data = [], {}
    for k, r in res.items():
        w = r["warm"]
        split = {
            f: statistics.median(c[f] for c in r["cold_split"])
            for f in (
                "imports_s",
                "bundle_s",
                "first_call_s",
                "imports_cpu_s",
                "bundle_cpu_s",
                "first_call_cpu_s",
            )
        }
        data[k] = {
            "warm": w,
            "cold_predict_s": statistics.median(c[0] for c in r["cold_predict"]),
            "cold_predict_cpu_s": statistics.median(c[1] for c in r["cold_predict"]),
            "cold_help_s": statistics.median(c[0] for c in r["cold_help"]),
            "cold_help_cpu_s": statistics.median(c[1] for c in r["cold_help"]),
            "cold_split": split,
            "batch_clips_per_s": r["batch_clips"] / r["batch_wall_s"],
            "batch_cpu_s_per_clip": r["batch_cpu_s"] / max(r["batch_clips"], 1),
            "hwm_mb": r["hwm_mb"],
            "help_imports": r["help_imports_heavy"],
            "feature_set": r["feature_set"],
            "aligner": r["aligner"],
        }
    # (label, getter, higher is better)
    figures = [
        ("warm: load audio, CPU s", lambda d: d["warm"]["load_cpu_s"], False),
        ("warm: align, CPU s", lambda d: d["warm"]["align_cpu_s"], False),
        ("warm: features, CPU s", lambda d: d["warm"]["features_cpu_s"], False),
        ("warm: model, CPU s", lambda d: d["warm"]["model_cpu_s"], False),
        ("warm: one call, CPU s (goal ≤ 0.3)", lambda d: d["warm"]["total_cpu_s"], False),
        ("warm: one call, wall s", lambda d: d["warm"]["total_s"], False),
        (
            "cold: `cmbert predict ... --json` from the shell, CPU s (goal ≤ 3 wall)",
            lambda d: d["cold_predict_cpu_s"],
            False,
        ),
        ("cold: the same, wall s", lambda d: d["cold_predict_s"], False),
        ("cold: of which imports, CPU s", lambda d: d["cold_split"]["imports_cpu_s"], False),
        ("cold: of which bundle load, CPU s", lambda d: d["cold_split"]["bundle_cpu_s"], False),
        ("cold: of which first call, CPU s", lambda d: d["cold_split"]["first_call_cpu_s"], False),
        ("cold: `cmbert --help`, CPU s", lambda d: d["cold_help_cpu_s"], False),
        ("cold: `cmbert --help`, wall s", lambda d: d["cold_help_s"], False),
        ("batch: demo corpus, clips per s (wall)", lambda d: d["batch_clips_per_s"], True),
        ("batch: CPU s per clip", lambda d: d["batch_cpu_s_per_clip"], False),
        ("peak RSS of the warm process (VmHWM), MB", lambda d: d["hwm_mb"], False),
    ]
    has_base = "base" in data
    for label, get, higher_better in figures:
        new = get(data["this tree"])
        row = [label]
        if has_base:
            old = get(data["base"])
            gain = (new / old if higher_better else old / new) if old and new else float("nan")
            row += [f"{old:.3f}", f"{new:.3f}", f"{gain:.2f}×"]
        else:
            row += [f"{new:.3f}"]
        rows.append(row)
    header = ["figure"] + (["base", "this tree", "better by"] if has_base else ["this tree"])
    d = data["this tree"]
    text_md = (
        f"4.0 s clip ({len(text.split())} words), model `{args.model}` (feature set "
        f"{d['feature_set']}, aligner {d['aligner']}), OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS', '1')}, load average {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} cores. Warm: median of {args.repeats} calls of one kept-alive "
        f"Predictor; cold: median of {args.cold_runs} fresh processes; batch: the "
        f"{DEMO.name} corpus through predict_corpus with the model loaded once. Wall "
        "times grow with machine load, CPU times and same-run ratios much less.\n\n"
        + markdown_table(header, rows)
        + "\n`cmbert --help` imports: "
        + "; ".join(f"{k}: {v['help_imports']}" for k, v in data.items())
        + "\n"
    )
    print(text_md)
    write_result(
        "predict_latency",
        text_md,
        {"trees": data, "base": args.base},
        title="predict latency (A/B)",
    )


if __name__ == "__main__":
    main()
