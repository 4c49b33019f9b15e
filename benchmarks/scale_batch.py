"""Align and extract throughput on each executor, as ratios in one run, and a MOSEI plan.

    OMP_NUM_THREADS=1 python benchmarks/scale_batch.py --clips 24 --features egemaps

On the same RAVDESS clips (``../shared/data/ravdess-dev``, the first ``--clips`` in name order
over all actors), each stage runs into an empty output once per executor:

- ``serial``: in this process (``--jobs 1``), the reference;
- ``--jobs 2``: the local process pool;
- ``--cluster local:1`` and ``--cluster local:2``: a Dask LocalCluster of 1 / 2 worker
  processes (started before the clock, as a running cluster would be).

It reports wall seconds, items per second, the speed-up against serial, the scaling efficiency
``T(local:1) / (2 · T(local:2))``, and the scheduler's overhead per item, measured directly
by running 200 empty items through each executor. A "resume" run (everything current)
measures the client's per-item cost of keying (hashing the audio, the TextGrid). From the
measured per-item costs it writes a paper plan for CMU-MOSEI (23 k segments, ~65 h of audio)
on 1, 8 and 64 workers, and where the shared file system becomes the limit.

The machine is small and shared: two cores and other jobs, so ``local:2`` cannot reach 2×;
the ratios are what this run measured, next to the load recorded in the stamp.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from _results import markdown_table, write_result  # noqa: E402

from cmbert_pipe.align import align_corpus, get_aligner  # noqa: E402
from cmbert_pipe.audio import load_audio  # noqa: E402
from cmbert_pipe.batch import Check, ItemKey, open_executor, run_stage  # noqa: E402
from cmbert_pipe.datasets.ravdess import load_ravdess  # noqa: E402
from cmbert_pipe.extract import extract_corpus  # noqa: E402

SHARED = Path(os.environ.get("CMBERT_SHARED_DATA", REPO.parent / "shared" / "data"))
EXECUTORS = (("serial", 1, None), ("--jobs 2", 2, None), ("local:1", 1, "local:1"),
             ("local:2", 1, "local:2"))
MOSEI_SEGMENTS = 23_000
MOSEI_AUDIO_S = 65 * 3600.0
COVAREP74_CPU_PER_AUDIO_S = 0.148  # s/s: results of benchmarks/covarep_speed.py (README)
WORKERS = (1, 8, 64)


def _noop(n: int, _key: ItemKey) -> int:
    return n


def _overhead_per_item(executor, n: int = 200) -> float:
    """Wall seconds per empty item through ``executor`` (submit, run, return, progress)."""
    t0 = time.perf_counter()
    run_stage(range(n), lambda i: ItemKey.of(i=i), lambda i, k: Check.missing(), _noop,
              stage="noop", item_id=str, executor=executor)
    return (time.perf_counter() - t0) / n


def _run(stage: str, utterances, out: Path, align_dir: Path | None, executor, features: str):
    t0, c0 = time.perf_counter(), time.process_time()
    if stage == "align":
        summary = align_corpus(utterances, out, get_aligner("pocketsphinx"), executor=executor)
    else:
        summary = extract_corpus(utterances, align_dir, out, feature_set=features,
                                 executor=executor)
    wall = time.perf_counter() - t0
    assert summary.ok, summary.failures
    return wall, time.process_time() - c0, summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--features", default="egemaps")
    args = ap.parse_args()

    scan = load_ravdess(SHARED / "ravdess-dev")
    step = max(1, len(scan.utterances) // args.clips)
    ordered = sorted(scan.utterances, key=lambda u: u.id)
    utts = ordered[::step][: args.clips]
    warm = [u for u in ordered if u not in utts][:4]  # untimed: each worker imports its libraries
    audio_s = sum(load_audio(u.audio).shape[0] / 16_000 for u in utts)
    print(f"{len(utts)} clips, {audio_s:.1f} s of audio")
    work = Path(tempfile.mkdtemp(prefix="scale_batch_"))
    rows, data = [], {"clips": len(utts), "audio_s": audio_s, "features": args.features,
                      "runs": {}}
    try:
        align_ref = work / "align-ref"
        for name, jobs, cluster in EXECUTORS:
            with open_executor(jobs, cluster) as ex:  # a cluster is up before the clock starts
                overhead = _overhead_per_item(ex)
                res = {"overhead_s_per_item": overhead}
                t0 = time.perf_counter()
                w_out = work / f"warm-{name.replace(' ', '').replace(':', '')}"
                _run("align", warm, w_out / "align", None, ex, args.features)
                _run("extract", warm, w_out / "cache", w_out / "align", ex, args.features)
                res["warm_up_s"] = time.perf_counter() - t0
                for stage in ("align", "extract"):
                    out = work / f"{stage}-{name.replace(' ', '').replace(':', '')}"
                    align_dir = align_ref if stage == "extract" else None
                    wall, cpu, _ = _run(stage, utts, out, align_dir, ex, args.features)
                    if stage == "align" and not align_ref.exists():
                        shutil.copytree(out, align_ref)
                    resume, _, summary = _run(stage, utts, out, align_dir, ex, args.features)
                    assert summary.skipped == len(utts)
                    res[stage] = {"wall_s": wall, "items_per_s": len(utts) / wall,
                                  "client_cpu_s": cpu,
                                  "resume_s_per_item": resume / len(utts)}
                    print(f"{name:9s} {stage:7s} {wall:7.1f} s  {len(utts) / wall:5.2f} items/s")
                data["runs"][name] = res
        ref = data["runs"]["serial"]
        for name, _, _ in EXECUTORS:
            r = data["runs"][name]
            cells = [f"{r[s]['wall_s']:.1f} s ({ref[s]['wall_s'] / r[s]['wall_s']:.2f}×)"
                     for s in ("align", "extract")]
            rows.append([name, *cells, f"{1000 * r['overhead_s_per_item']:.1f} ms",
                         f"{r['warm_up_s']:.1f} s"])
        eff = {s: data["runs"]["local:1"][s]["wall_s"] / (2 * data["runs"]["local:2"][s]["wall_s"])
               for s in ("align", "extract")}
        data["scaling_efficiency_local2"] = eff
        # per-item cost of the real work: CPU seconds of the serial run (all in this process;
        # wall time on a loaded shared machine would inflate it by the load)
        per_item = {s: ref[s]["client_cpu_s"] / len(utts) for s in ("align", "extract")}
        per_audio_s = {s: ref[s]["client_cpu_s"] / audio_s for s in ("align", "extract")}
        keying = {s: ref[s]["resume_s_per_item"] for s in ("align", "extract")}
        dask_oh = data["runs"]["local:2"]["overhead_s_per_item"]
        data.update(per_item_s=per_item, per_audio_s=per_audio_s, client_keying_s=keying)
        plan_rows, plan = [], {}
        for feats, extract_cost in ((args.features, per_audio_s["extract"]),
                                    ("covarep74", COVAREP74_CPU_PER_AUDIO_S)):
            cpu_s = MOSEI_AUDIO_S * (per_audio_s["align"] + extract_cost)
            client_s = MOSEI_SEGMENTS * (keying["align"] + keying["extract"])
            for w in WORKERS:
                compute = cpu_s / w
                sched = MOSEI_SEGMENTS * dask_oh / min(w, 8)  # overhead overlaps up to ~8 w.
                total = compute + client_s + sched
                items_per_s = MOSEI_SEGMENTS * 2 / compute  # align + extract items
                plan[f"{feats}/{w}"] = {"hours": total / 3600, "items_per_s": items_per_s}
                read_mb_s = 2 * MOSEI_AUDIO_S * 16_000 * 2 / compute / 1e6  # read twice, PCM16
                plan[f"{feats}/{w}"]["read_mb_per_s"] = read_mb_s
                plan_rows.append([feats, w, f"{total / 3600:.1f} h", f"{items_per_s:.1f}",
                                  f"{4 * items_per_s:.0f}", f"{read_mb_s:.1f}"])
        data["mosei_plan"] = plan
        max_ops = max(4 * v["items_per_s"] for k, v in plan.items() if k.endswith("/64"))
        body = [
            f"{len(utts)} RAVDESS clips ({audio_s:.0f} s of audio), pocketsphinx alignment and "
            f"{args.features} extraction, each run into an empty folder after an untimed "
            "warm-up on 4 other clips (a spawned Dask worker starts cold and imports the "
            "aligner and feature libraries on its first item; the fork-based pool inherits "
            "them); the speed-up is against the serial run of the same command.\n\n",
            markdown_table(["executor", "align (speed-up)", "extract (speed-up)",
                            "overhead per empty item", "warm-up (4 clips)"], rows),
            f"\nScaling efficiency of `--cluster local:2` over `local:1` "
            f"(T1 / 2·T2): align {eff['align']:.2f}, extract {eff['extract']:.2f} — on 2 shared "
            "cores with other jobs running (see the load in the stamp), so below 1 by "
            "construction here.\n",
            f"\nCPU per item (serial, this process): align {per_item['align']:.2f} s, extract "
            f"{per_item['extract']:.2f} s; that is {per_audio_s['align']:.3f} and "
            f"{per_audio_s['extract']:.3f} CPU-s per audio second. The client's wall time per item "
            f"when everything is current (hashing audio and TextGrid to key it): align "
            f"{1000 * keying['align']:.1f} ms, extract {1000 * keying['extract']:.1f} ms.\n",
            "\n## Paper plan: CMU-MOSEI (23 k segments, ~65 h) on a Dask cluster\n\n"
            "Compute = 65 h × (align + extract CPU per audio second) / workers, plus the "
            "client's keying of every item (serial, in the client) and the scheduler overhead "
            "measured above. COVAREP-74 uses its measured 0.148 CPU-s per audio second.\n\n",
            markdown_table(["features", "workers", "wall time", "items/s", "file ops/s",
                            "audio read MB/s"], plan_rows),
            "\nWhere the shared file system becomes the limit: every item reads one audio file "
            "(MOSEI: ~7.5 GB as 16-bit 16 kHz PCM, about half that as FLAC) and writes 2–3 "
            "small files atomically (temp file + rename: align writes a TextGrid and a sidecar, "
            "extract one cache entry), about 4 metadata operations per item (the 'file ops/s' "
            f"column). At 64 workers that is up to {max_ops:.0f} creates/renames per second "
            "in one folder tree: within what an NFS or Lustre metadata server sustains (a few "
            "thousand per second) but a real share of a busy one, so beyond ~64 workers on "
            "fast features the metadata server, not the data rate (the last column, tens of "
            "MB/s), is the first file-system limit; sharding the output folders or writing "
            "entries per worker and merging would lift it. The client's serial keying (it "
            "reads and hashes every audio file before submitting) adds "
            f"{client_s / 60:.0f} min for MOSEI whatever the number of workers, and the "
            "scheduler spends the per-item overhead above on every task.\n",
        ]
        write_result("scale_batch", "".join(body), data,
                     title="Batch stages on a process pool and on Dask")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
