"""The batch runner: per-item failures, results persisted as they arrive, worker processes."""

from __future__ import annotations

import os

import pytest

from cmbert_pipe.batch import run_batch
from cmbert_pipe.errors import AudioError


def _work(n: int) -> int:
    if n == 3:
        raise AudioError("audio is silent", f"/data/clip{n}.wav")
    if n == 5:
        raise ValueError("unexpected")
    return n * n


def _pid(_: int) -> int:
    return os.getpid()


@pytest.mark.parametrize("jobs", [1, 2])
def test_failures_are_per_item_and_the_rest_finishes(jobs):
    seen, progress = [], []
    results, failures = run_batch(
        range(8), _work, stage="test", item_id=str, jobs=jobs,
        on_result=lambda item, r: seen.append((item, r)),
        on_progress=lambda done, failed, total: progress.append((done, failed, total)),
    )
    assert sorted(results) == [(n, n * n) for n in range(8) if n not in (3, 5)]
    assert sorted(seen) == sorted(results)
    by_id = {f.item_id: f for f in failures}
    assert set(by_id) == {"3", "5"}
    assert by_id["3"].path == "/data/clip3.wav" and by_id["3"].reason == "audio is silent"
    assert by_id["3"].error_type == "AudioError" and by_id["3"].stage == "test"
    assert by_id["5"].reason == "ValueError: unexpected"
    assert progress[-1] == (8, 2, 8)
    assert [p[0] for p in progress] == list(range(1, 9))


def test_jobs_use_worker_processes():
    results, failures = run_batch(range(6), _pid, stage="t", item_id=str, jobs=2)
    assert not failures
    assert os.getpid() not in {pid for _, pid in results}
