"""The batch-stage skeleton: keys and skip decisions, per-item failures, local process pools,
a real local Dask cluster, workers killed mid-item, an unreachable scheduler, orphan workers."""

from __future__ import annotations

import functools
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cmbert_pipe.batch import (
    Check,
    DaskExecutor,
    ItemKey,
    ProcessExecutor,
    open_executor,
    parse_cluster,
    run_stage,
)
from cmbert_pipe.errors import AudioError, ConfigError


def _work(n: int, _key: ItemKey) -> int:
    if n == 3:
        raise AudioError("audio is silent", f"/data/clip{n}.wav")
    if n == 5:
        raise ValueError("unexpected")
    return n * n


def _pid(_n: int, _key: ItemKey) -> int:
    return os.getpid()


def _key(n: int) -> ItemKey:
    return ItemKey.of(n=n)


def _missing(_n: int, _k: ItemKey) -> Check:
    return Check.missing()


def _kill_once(marker_dir: str, n: int, _key: ItemKey) -> int:
    """Kill this worker process (SIGKILL, like the OOM killer) the first time item 2 runs."""
    marker = Path(marker_dir) / f"started-{n}"
    if n == 2 and not marker.exists():
        marker.write_text("x")
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.05)
    return n


def _kill_always(n: int, _key: ItemKey) -> int:
    if n == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return n


def _stage(items, work, **kw):
    seen, progress = [], []
    summary = run_stage(items, _key, _missing, work,
                        persist=lambda item, k, r: seen.append((item, r)),
                        on_progress=lambda d, f, t: progress.append((d, f, t)),
                        stage="test", item_id=str, **kw)
    return summary, sorted(seen), progress


def test_item_key_names_the_part_that_changed():
    a = ItemKey.of(audio_sha256="aa", transcript="hello", settings={"x": 1})
    b = ItemKey.of(audio_sha256="aa", transcript="hello", settings={"x": 2})
    assert a.digest != b.digest and set(a.parts) == {"audio_sha256", "transcript", "settings"}
    assert Check.against(a, a.digest, a.parts).current
    assert Check.against(b, a.digest, a.parts).changed == ("settings",)
    assert Check.against(b, a.digest, None).changed == ("key",)  # recorded without parts
    assert not Check.against(b, None, None).current and not Check.against(b, None, None).changed


def test_skip_decision_and_what_changed_are_reported():
    recorded = {n: ItemKey.of(n=n) for n in range(4)}
    recorded[2] = ItemKey.of(n=-2)  # recorded under another key: recomputed, and said why

    def is_current(n, k):
        r = recorded.get(n)
        return Check.against(k, r and r.digest, r and r.parts)

    summary = run_stage(range(6), _key, is_current, lambda n, k: n, stage="t", item_id=str)
    assert (summary.total, summary.skipped, summary.done) == (6, 3, 3)
    assert summary.changed == (("n", 1),)
    assert summary.to_dict()["recomputed_because"] == {"n": 1}
    forced = run_stage(range(6), _key, is_current, lambda n, k: n, stage="t", item_id=str,
                       force=True)
    assert forced.skipped == 0 and forced.done == 6


@pytest.mark.parametrize("jobs", [1, 2])
def test_failures_are_per_item_and_the_rest_finishes(jobs):
    summary, seen, progress = _stage(range(8), _work, jobs=jobs)
    assert seen == [(n, n * n) for n in range(8) if n not in (3, 5)]
    by_id = {f.item_id: f for f in summary.failures}
    assert set(by_id) == {"3", "5"} and summary.done == 6
    assert by_id["3"].path == "/data/clip3.wav" and by_id["3"].reason == "audio is silent"
    assert by_id["3"].error_type == "AudioError" and by_id["3"].stage == "test"
    assert by_id["5"].reason == "ValueError: unexpected"
    assert progress[0] == (0, 0, 8) and progress[-1] == (8, 2, 8)
    assert [p[0] for p in progress] == list(range(0, 9))


def test_key_errors_fail_the_item_before_any_work():
    def key(n):
        if n == 1:
            raise AudioError("audio file not found", "/x/1.wav")
        return ItemKey.of(n=n)

    summary = run_stage(range(3), key, _missing, lambda n, k: n, stage="t", item_id=str)
    assert summary.done == 2 and [f.item_id for f in summary.failures] == ["1"]
    assert summary.failures[0].path == "/x/1.wav"


def test_jobs_use_worker_processes():
    pids = []
    summary = run_stage(range(6), _key, _missing, _pid, lambda i, k, pid: pids.append(pid),
                        stage="t", item_id=str, jobs=2)
    assert summary.done == 6 and os.getpid() not in pids


def test_process_pool_worker_killed_mid_item_is_retried_and_the_rest_finish(tmp_path):
    summary, seen, _ = _stage(range(6), functools.partial(_kill_once, str(tmp_path)),
                              executor=ProcessExecutor(2))
    assert not summary.failures and summary.done == 6
    assert seen == [(n, n) for n in range(6)] and (tmp_path / "started-2").exists()


def test_process_pool_item_that_always_kills_its_worker_is_reported():
    with open_executor(jobs=2) as ex:
        summary, seen, _ = _stage(range(5), _kill_always, executor=ex)
    assert [f.item_id for f in summary.failures] == ["1"]
    assert summary.failures[0].error_type == "WorkerDied"
    assert "died" in summary.failures[0].reason
    assert seen == [(n, n) for n in (0, 2, 3, 4)]


def test_parse_cluster():
    assert parse_cluster("local:3") == ("local", 3)
    assert parse_cluster("tcp://10.0.0.5:8786") == ("remote", "tcp://10.0.0.5:8786")
    assert parse_cluster("node7:8786") == ("remote", "node7:8786")
    for bad in ("local:0", "local", "tcp://host", "http://", "8786"):
        with pytest.raises(ConfigError, match="--cluster"):
            parse_cluster(bad)


def test_unreachable_scheduler_is_one_clear_error_within_seconds():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    t0 = time.monotonic()
    with pytest.raises(ConfigError, match=f"no Dask scheduler answers at {address}"):
        DaskExecutor(address, connect_timeout_s=2.0)
    assert time.monotonic() - t0 < 15.0


@pytest.fixture(scope="module")
def dask_local():
    """A real LocalCluster: 2 worker processes, 1 thread each."""
    ex = DaskExecutor("local:2")
    yield ex
    ex.close()


def test_dask_cluster_runs_items_in_its_workers_with_per_item_failures(dask_local):
    summary, seen, progress = _stage(range(8), _work, executor=dask_local)
    assert seen == [(n, n * n) for n in range(8) if n not in (3, 5)]
    by_id = {f.item_id: f for f in summary.failures}
    assert by_id["3"].path == "/data/clip3.wav" and by_id["5"].reason == "ValueError: unexpected"
    assert progress[-1] == (8, 2, 8)
    pids = []
    run_stage(range(4), _key, _missing, _pid, lambda i, k, pid: pids.append(pid), stage="t",
              item_id=str, executor=dask_local)
    assert os.getpid() not in pids


def test_dask_worker_killed_mid_item_is_retried_and_the_rest_finish(dask_local, tmp_path):
    summary, seen, _ = _stage(range(6), functools.partial(_kill_once, str(tmp_path)),
                              executor=dask_local)
    assert not summary.failures, summary.failures
    assert seen == [(n, n) for n in range(6)] and (tmp_path / "started-2").exists()


def test_pool_workers_exit_when_the_parent_is_killed(tmp_path):
    """kill -9 of a `--jobs 2` parent must not leave its workers running."""
    script = tmp_path / "parent.py"
    pids = tmp_path / "pids"
    script.write_text(textwrap.dedent(f"""
        import os, time
        from cmbert_pipe.batch import ItemKey, Check, run_stage

        def work(n, key):
            with open({str(pids)!r}, "a") as fh:
                fh.write(f"{{os.getpid()}}\\n")
            time.sleep(60)

        run_stage(range(2), lambda n: ItemKey.of(n=n), lambda n, k: Check.missing(), work,
                  stage="t", item_id=str, jobs=2)
    """))
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    parent = subprocess.Popen([sys.executable, str(script)], env=env)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if pids.exists() and len(pids.read_text().split()) == 2:
                break
            time.sleep(0.2)
        workers = [int(p) for p in pids.read_text().split()]
        assert len(workers) == 2
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 10
    alive = workers
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [p for p in workers if _alive(p)]
    assert not alive, f"workers {alive} outlived their parent"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by init) is not running
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
