"""Run one function over many items, in worker processes, failing per item, never as a whole.

    >>> results, failures = run_batch(items, work, jobs=2, item_id=lambda u: u.id,
    ...                               on_progress=lambda done, failed, total: ...)

``work(item)`` returns a result or raises. A :class:`~cmbert_pipe.errors.CmbertError` becomes an
:class:`~cmbert_pipe.schema.ItemFailure` with its file and reason; any other exception too,
with its type in the reason (the CLI shows the traceback only under ``--debug``). Results are
handed to ``on_result`` in the parent process as they arrive, so a caller can persist each one
at once and a killed run loses nothing that finished.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any, TypeVar

from cmbert_pipe.errors import CmbertError
from cmbert_pipe.schema import ItemFailure

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")


def _call(work: Callable[[T], R], item: T) -> tuple[bool, Any]:
    """Run in the worker: (True, result) or (False, (path, reason, type, traceback))."""
    try:
        return True, work(item)
    except CmbertError as e:
        return False, (e.path, e.reason, type(e).__name__, traceback.format_exc())
    except Exception as e:  # an unexpected bug must not end the batch either
        return False, (None, f"{type(e).__name__}: {e}", type(e).__name__, traceback.format_exc())


def run_batch(
    items: Sequence[T] | Iterable[T],
    work: Callable[[T], R],
    *,
    stage: str,
    item_id: Callable[[T], str],
    jobs: int = 1,
    on_result: Callable[[T, R], None] | None = None,
    on_progress: Callable[[int, int, int], None] | None = None,
) -> tuple[list[tuple[T, R]], list[ItemFailure]]:
    """Apply ``work`` to every item; return (successes, failures). See the module docstring.

    ``work`` must be picklable (a module-level function or a ``functools.partial`` of one)
    when ``jobs > 1``. ``on_progress(done, failed, total)`` is called after every item.
    """
    items = list(items)
    total = len(items)
    results: list[tuple[T, R]] = []
    failures: list[ItemFailure] = []

    def settle(item: T, ok: bool, payload: Any) -> None:
        if ok:
            results.append((item, payload))
            if on_result is not None:
                on_result(item, payload)
        else:
            path, reason, etype, tb = payload
            log.debug("%s failed for %s:\n%s", stage, item_id(item), tb)
            failures.append(ItemFailure(item_id(item), path, stage, reason, etype))
        if on_progress is not None:
            on_progress(len(results) + len(failures), len(failures), total)

    if jobs <= 1 or total <= 1:
        for item in items:
            ok, payload = _call(work, item)
            settle(item, ok, payload)
        return results, failures

    with ProcessPoolExecutor(max_workers=min(jobs, total)) as pool:  # no idle workers
        pending = {pool.submit(_call, work, item): item for item in items}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                item = pending.pop(fut)
                try:
                    ok, payload = fut.result()
                except Exception as e:  # the worker process died (killed, out of memory)
                    ok, payload = False, (None, f"worker died: {type(e).__name__}: {e}",
                                          type(e).__name__, "")
                settle(item, ok, payload)
    return results, failures
