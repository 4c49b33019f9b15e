"""Latency of `predict` on one 4-second clip on CPU: warm (model loaded) and cold (new process),
split by stage. Goal (issue 5): warm under 0.5 s, cold under 5 s.

    cmbert demo --out runs/demo                                    # makes a bundle first
    OMP_NUM_THREADS=2 python benchmarks/predict_latency.py --model runs/demo/model/seed-0

The clip is made from the embedded demo corpus (two synthesised sentences, padded with silence
to exactly 4.000 s), so the benchmark needs nothing outside the repository. Warm: one
:class:`~cmbert_pipe.predict.Predictor`, warmed up once, then ``--repeats`` predictions; the
median of each stage is printed. Cold: ``--cold-runs`` fresh Python processes, each importing
the package, loading the bundle and scoring the clip once; the wall time from process start
to result is split into interpreter+imports, bundle load, and the stages of the first call.
Figures are also given as real-time factors (seconds per second of audio) and as the ratio
cold / warm of the same run.
"""

from __future__ import annotations

import argparse
import json
import os
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
PARTS = (("pos02", "The acting was wonderful and funny"),
         ("pos09", "I would gladly watch it again"))
STAGES = ("load_s", "align_s", "features_s", "model_s")  # wall time
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
    print(json.dumps({"imports_s": t1 - t0, "bundle_s": t2 - t1, "first_call_s": t3 - t2,
                      "imports_cpu_s": c1, "bundle_cpu_s": c2 - c1, "first_call_cpu_s": c3 - c2,
                      **p.timings_s, "score": p.score}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=str(REPO / "runs" / "demo" / "model" / "seed-0"))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--cold-runs", type=int, default=2)
    ap.add_argument("--cold-child", nargs=2, metavar=("CLIP", "TEXT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.cold_child:
        cold_child(args.model, *args.cold_child)
        return
    if not (Path(args.model) / "config.json").is_file():
        raise SystemExit(f"no model bundle at {args.model}: run `cmbert demo --out runs/demo`")

    import torch

    from cmbert_pipe.acoustic import FEATURE_SET_NAMES, extract_frames
    from cmbert_pipe.audio import load_audio
    from cmbert_pipe.predict import Predictor

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    tmp = Path(tempfile.mkdtemp(prefix="cmbert-latency-"))
    clip, text = make_clip(tmp)

    # -- warm ------------------------------------------------------------------------------
    t0 = time.perf_counter()
    predictor = Predictor.from_pretrained(args.model)
    load_s = time.perf_counter() - t0
    predictor.warm_up()
    runs = []
    for _ in range(args.repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        p = predictor.predict(clip, text)
        runs.append(dict(p.timings_s, total_s=time.perf_counter() - t0,
                         total_cpu_s=time.process_time() - c0))
    keys = (*STAGES, *CPU_STAGES, "total_s", "total_cpu_s")
    warm = {k: statistics.median(r[k] for r in runs) for k in keys}

    # -- cold ------------------------------------------------------------------------------
    colds = []
    for _ in range(args.cold_runs):
        t0 = time.perf_counter()
        res = subprocess.run([sys.executable, __file__, "--model", args.model,
                              "--cold-child", str(clip), text],
                             capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
        if res.returncode != 0:
            raise SystemExit(f"cold run failed:\n{res.stderr[-2000:]}")
        d = json.loads(res.stdout.strip().splitlines()[-1])
        d["wall_s"] = wall
        colds.append(d)
    cold = {k: statistics.median(c[k] for c in colds)
            for k in ("wall_s", "imports_s", "bundle_s", "first_call_s", "imports_cpu_s",
                      "bundle_cpu_s", "first_call_cpu_s", *STAGES, *CPU_STAGES)}

    fs = predictor.feature_set
    print(f"clip: {CLIP_S:.1f} s, {len(text.split())} words; model {args.model} "
          f"({predictor.bundle.config.model}, feature set {fs}, aligner "
          f"{predictor.aligner_name}); torch threads {torch.get_num_threads()}")
    print(f"bundle load in this process: {load_s:.2f} s; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (figures assume an idle machine)\n")
    print("wall = elapsed seconds; cpu = CPU seconds of the process (all threads): on a busy\n"
          "machine wall grows with the load, cpu does not; on an idle one wall ~ cpu / threads.")
    print(f"{'stage':<18}{'warm wall':>10}{'warm cpu':>10}{'cold wall':>11}{'cold cpu':>10}"
          f"{'cold/warm cpu':>15}")
    for k, c in zip(STAGES, CPU_STAGES):
        print(f"{k[:-2]:<18}{warm[k]:>10.3f}{warm[c]:>10.3f}{cold[k]:>11.3f}{cold[c]:>10.3f}"
              f"{cold[c] / max(warm[c], 1e-9):>15.1f}")
    print(f"{'one call':<18}{warm['total_s']:>10.3f}{warm['total_cpu_s']:>10.3f}"
          f"{cold['first_call_s']:>11.3f}{cold['first_call_cpu_s']:>10.3f}"
          f"{cold['first_call_cpu_s'] / max(warm['total_cpu_s'], 1e-9):>15.1f}")
    print(f"real-time factor (warm wall / {CLIP_S:.0f} s of audio): "
          f"{warm['total_s'] / CLIP_S:.3f}; (warm cpu / audio): {warm['total_cpu_s'] / CLIP_S:.3f}")
    print(f"\ncold process: wall {cold['wall_s']:.2f} s = interpreter+imports "
          f"{cold['imports_s']:.2f} s (cpu {cold['imports_cpu_s']:.2f}) + bundle load "
          f"{cold['bundle_s']:.2f} s (cpu {cold['bundle_cpu_s']:.2f}) + first call "
          f"{cold['first_call_s']:.2f} s (cpu {cold['first_call_cpu_s']:.2f}) + process start")
    cold_cpu = cold["imports_cpu_s"] + cold["bundle_cpu_s"] + cold["first_call_cpu_s"]
    print(f"goals: warm < 0.5 s: wall {warm['total_s']:.2f} s, cpu {warm['total_cpu_s']:.2f} s "
          f"({'met' if warm['total_cpu_s'] < 0.5 else 'NOT met'} by cpu); cold < 5 s: wall "
          f"{cold['wall_s']:.2f} s, cpu {cold_cpu:.2f} s "
          f"({'met' if cold_cpu < 5 else 'NOT met'} by cpu)")

    # where the feature time goes: every feature set on the same clip, same process
    wave = load_audio(clip)
    print("\nfeature extraction alone on this clip (same process, after one warm-up call):")
    for name in FEATURE_SET_NAMES:
        extract_frames(wave[:16_000], 16_000, name)
        t0, c0 = time.perf_counter(), time.process_time()
        extract_frames(wave, 16_000, name)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        print(f"  {name:<10} wall {dt:7.3f} s  cpu {dc:7.3f} s  cpu RTF {dc / CLIP_S:.3f}  "
              f"{dc / max(warm['features_cpu_s'], 1e-9):6.3f}x the bundle's ({fs}) cpu")


if __name__ == "__main__":
    main()
