"""The batch-stage skeleton: skip what is current, run the rest on an executor, fail per item.

    >>> summary = run_stage(utterances, key=key_of, is_current=check, work=work,
    ...                     persist=keep, on_progress=bar, stage="align", item_id=lambda u: u.id,
    ...                     executor=executor)          # or jobs=2 for a local process pool

Every batch stage (align, extract, batch predict) is the same loop, written once here:

1. ``key(item) -> ItemKey`` in the parent: the item's full content key (digests of its inputs
   and every setting), as named parts. A :class:`~cmbert_pipe.errors.CmbertError` (missing
   audio, missing alignment) makes the item a failure before any work.
2. ``is_current(item, key) -> Check``: is a result recorded under exactly this key? If not,
   :meth:`Check.against` names the parts that differ from what was recorded, and the stage logs
   them and counts them in :attr:`BatchSummary.changed` (a re-run with other settings says
   what it recomputes and why).
3. ``work(item, key)`` runs on the executor -- in this process, a local process pool
   (``jobs``), or a Dask cluster (:func:`open_executor`) -- and writes its own result
   atomically into the output folder; only paths and settings travel, never audio arrays.
4. ``persist(item, key, result)`` runs in the parent as each result arrives (index rows, CSV
   lines), so a killed run loses nothing finished.

Whatever the executor, failures are per item (:class:`~cmbert_pipe.schema.ItemFailure` with
the file and the reason) and a worker process that dies mid-item (killed, out of memory) is
retried once on its own and reported if it dies again; the rest finish. Local pool workers die
with their parent (Linux ``PR_SET_PDEATHSIG``, a watchdog thread elsewhere).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import re
import signal
import sys
import threading
import time
import traceback
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from cmbert_pipe.errors import CmbertError, ConfigError
from cmbert_pipe.io import content_key, short_key
from cmbert_pipe.schema import BatchSummary, ItemFailure

log = logging.getLogger(__name__)
T = TypeVar("T")

ProgressCallback = Callable[[int, int, int], None]
"""``on_progress(done, failed, total)``: called once before the work (skipped and early
failures count as done) and after every item."""

CONNECT_TIMEOUT_S = 5.0  # s: a scheduler that has not answered by then is reported unreachable
MAX_ATTEMPTS = 2  # a worker death mid-item: retried once on its own, then reported
WORKER_DIED = "WorkerDied"
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


# -- keys ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ItemKey:
    """The full content key of one item: ``digest`` over every part, and a short digest per
    named part (what is recorded beside a result, to say later which part changed)."""

    digest: str  # SHA-256 over the canonical JSON of all parts
    parts: Mapping[str, str] = field(default_factory=dict)  # part name -> 16-hex digest

    @classmethod
    def of(cls, **parts: Any) -> ItemKey:
        """The key of ``parts`` (JSON-able values: digests, transcript, settings dicts)."""
        return cls(content_key(**parts), part_digests(parts))


def part_digests(parts: Mapping[str, Any]) -> dict[str, str]:
    return {name: short_key(v) for name, v in sorted(parts.items())}


@dataclass(frozen=True)
class Check:
    """Whether an item's recorded result is current, and if not, which key parts changed."""

    current: bool
    changed: tuple[str, ...] = ()  # parts that differ from the recorded key ("key" if unknown)

    @classmethod
    def missing(cls) -> Check:
        """Nothing recorded for this item: compute it (nothing to report)."""
        return cls(False)

    @classmethod
    def against(cls, key: ItemKey, recorded_digest: str | None,
                recorded_parts: Mapping[str, str] | None) -> Check:
        """Compare ``key`` with what was recorded (None: nothing recorded)."""
        if recorded_digest is None:
            return cls(False)
        if recorded_digest == key.digest:
            return cls(True)
        if not recorded_parts:  # recorded by a version that kept no parts
            return cls(False, ("key",))
        names = sorted(set(recorded_parts) | set(key.parts))
        changed = tuple(n for n in names if recorded_parts.get(n) != key.parts.get(n))
        return cls(False, changed or ("key",))


# -- executors -------------------------------------------------------------------------------
Outcome = tuple[int, bool, Any]  # (index, ok, result or (path, reason, type, traceback))


class Executor(Protocol):
    """Runs ``fn(*args)`` for every args tuple; yields outcomes in completion order."""

    name: str

    def run(self, fn: Callable[..., Any], calls: Sequence[tuple]) -> Iterator[Outcome]: ...


def _call(fn: Callable[..., Any], *args: Any) -> tuple[bool, Any]:
    """Run in the worker: (True, result) or (False, (path, reason, type, traceback))."""
    try:
        return True, fn(*args)
    except CmbertError as e:
        return False, (e.path, e.reason, type(e).__name__, traceback.format_exc())
    except Exception as e:  # an unexpected bug must not end the batch either
        return False, (None, f"{type(e).__name__}: {e}", type(e).__name__, traceback.format_exc())


def _died(attempts: int) -> tuple[None, str, str, str]:
    return (None, f"the worker process died while running this item ({attempts} attempt(s); "
            "killed or out of memory)", WORKER_DIED, "")


class SerialExecutor:
    """Everything in this process, in order."""

    name = "serial"

    def run(self, fn: Callable[..., Any], calls: Sequence[tuple]) -> Iterator[Outcome]:
        for i, args in enumerate(calls):
            yield (i, *_call(fn, *args))


def _watch_parent(parent_pid: int) -> None:
    while True:
        if os.getppid() != parent_pid:
            os._exit(1)
        time.sleep(1.0)


def _worker_init(parent_pid: int) -> None:
    """Pool worker start-up: exit when the parent dies (it would otherwise be orphaned)."""
    armed = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)
    if not armed:
        threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()


class ProcessExecutor:
    """A local process pool of ``jobs`` workers that survives a worker's death.

    At most ``jobs`` items are in flight, so when a worker dies (the pool breaks) the items in
    flight are exactly the suspects; each is retried alone in a fresh pool, and an item whose
    worker dies again is reported as failed.
    """

    name = "processes"

    def __init__(self, jobs: int):
        if jobs < 1:
            raise ConfigError(f"jobs must be >= 1, got {jobs}")
        self.jobs = jobs
        self._pool: ProcessPoolExecutor | None = None

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self.jobs, initializer=_worker_init,
                                             initargs=(os.getpid(),))
        return self._pool

    def _drop_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def run(self, fn: Callable[..., Any], calls: Sequence[tuple]) -> Iterator[Outcome]:
        queue: deque[int] = deque(range(len(calls)))
        retry: deque[int] = deque()
        attempts = [0] * len(calls)
        inflight: dict[Any, int] = {}
        while queue or retry or inflight:
            if retry:  # a suspect runs alone, so a second death is its own
                if not inflight:
                    i = retry.popleft()
                    attempts[i] += 1
                    inflight[self._get_pool().submit(_call, fn, *calls[i])] = i
            else:
                while queue and len(inflight) < self.jobs:
                    i = queue.popleft()
                    attempts[i] += 1
                    inflight[self._get_pool().submit(_call, fn, *calls[i])] = i
            done, _ = wait(inflight, return_when=FIRST_COMPLETED)
            broken: list[int] = []
            for fut in done:
                i = inflight.pop(fut)
                try:
                    ok, payload = fut.result()
                except BrokenProcessPool:
                    broken.append(i)
                    continue
                except Exception as e:  # e.g. a result that cannot be pickled back
                    ok, payload = False, (None, f"{type(e).__name__}: {e}", type(e).__name__, "")
                yield i, ok, payload
            if broken:
                broken += list(inflight.values())  # the pool is gone: all in flight with it
                inflight.clear()
                self._drop_pool()
                for i in broken:
                    if attempts[i] >= MAX_ATTEMPTS:
                        yield i, False, _died(attempts[i])
                    else:
                        log.warning("a worker process died; retrying item %d on its own", i)
                        retry.append(i)


_LOCAL = re.compile(r"local:(\d+)$")
_ADDRESS = re.compile(r"([a-z][a-z0-9+]*://)?[^\s/:]+:\d+/?$")


def parse_cluster(address: str) -> tuple[str, int | str]:
    """``local:N`` -> ("local", N); ``tcp://host:8786`` / ``host:8786`` -> ("remote", address).
    Anything else is a :class:`ConfigError` naming the accepted forms."""
    address = address.strip()
    m = _LOCAL.fullmatch(address)
    if m:
        n = int(m.group(1))
        if n < 1:
            raise ConfigError(f"--cluster {address}: a local cluster needs at least 1 worker")
        return "local", n
    if _ADDRESS.fullmatch(address):
        return "remote", address
    raise ConfigError(f"--cluster {address!r}: expected local:N (N worker processes here) or "
                      "a Dask scheduler address such as tcp://host:8786")


class DaskExecutor:
    """Items as tasks on a Dask cluster: a running scheduler or a ``LocalCluster``.

    Dask reschedules a task whose worker died; after ``allowed-failures`` deaths it raises
    ``KilledWorker``, which becomes that item's failure. ``distributed`` is imported here, not
    at the top: it costs about a second of start-up that commands without ``--cluster`` skip.
    """

    name = "dask"

    def __init__(self, address: str, *, connect_timeout_s: float = CONNECT_TIMEOUT_S):
        kind, arg = parse_cluster(address)
        try:
            import dask
            from distributed import Client, LocalCluster
        except ImportError:
            raise ConfigError("--cluster needs Dask: pip install 'cmbert-pipe[cluster]'") from None
        self.address = address
        self._cluster = None
        logging.getLogger("distributed").setLevel(logging.WARNING)  # no per-comm INFO lines
        if kind == "local":
            # a local item whose worker dies is retried once (the scheduler's default is 3)
            with dask.config.set({"distributed.scheduler.allowed-failures": MAX_ATTEMPTS - 1}):
                self._cluster = LocalCluster(n_workers=int(arg), threads_per_worker=1,
                                             processes=True, dashboard_address=None,
                                             silence_logs=logging.ERROR)
            self.client = Client(self._cluster)
            self.n_workers = int(arg)
        else:
            try:
                self.client = Client(str(arg), timeout=f"{connect_timeout_s}s")
            except (OSError, TimeoutError) as e:
                raise ConfigError(f"no Dask scheduler answers at {arg} "
                                  f"(waited {connect_timeout_s:.0f} s): {e}") from None
            self.n_workers = len(self.client.scheduler_info().get("workers", {}))
        log.info("dask: %s with %d worker(s)", address, self.n_workers)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()
        if self._cluster is not None:
            with contextlib.suppress(Exception):
                self._cluster.close()

    def run(self, fn: Callable[..., Any], calls: Sequence[tuple]) -> Iterator[Outcome]:
        from distributed import as_completed
        from distributed.scheduler import KilledWorker

        batch = uuid.uuid4().hex[:8]
        futures = {self.client.submit(_call, fn, *args, key=f"cmbert-{batch}-{i}", pure=False): i
                   for i, args in enumerate(calls)}
        for fut in as_completed(list(futures)):
            i = futures.pop(fut)
            try:
                ok, payload = fut.result()
            except KilledWorker:
                ok, payload = False, _died(MAX_ATTEMPTS)
            except Exception as e:  # lost scheduler, cancelled task
                ok, payload = False, (None, f"dask: {type(e).__name__}: {e}", type(e).__name__,
                                      "")
            fut.release()
            yield i, ok, payload


@contextlib.contextmanager
def open_executor(jobs: int = 1, cluster: str | None = None) -> Iterator[Executor]:
    """The executor for ``--jobs``/``--cluster``: Dask when ``cluster`` is given (connecting
    now, so an unreachable scheduler fails before anything is written), else a local process
    pool of ``jobs`` workers (``jobs == 1``: this process)."""
    if cluster:
        ex: Any = DaskExecutor(cluster)
    elif jobs > 1:
        ex = ProcessExecutor(jobs)
    else:
        ex = SerialExecutor()
    try:
        yield ex
    finally:
        close = getattr(ex, "close", None)
        if close is not None:
            close()


# -- the stage loop --------------------------------------------------------------------------
@dataclass
class StagePlan:
    """What :func:`plan_stage` decided: the items to compute (with their keys), the count
    already current, failures so far, and how many items each changed key part sends back."""

    stage: str
    total: int
    pending: list[tuple[Any, ItemKey]]
    skipped: int
    failures: list[ItemFailure]
    changed: Counter

    def summary(self, n_done: int) -> BatchSummary:
        return BatchSummary(self.stage, self.total, n_done, self.skipped, tuple(self.failures),
                            changed=tuple(sorted(self.changed.items())))


def _failure(item_id: str, stage: str, e: BaseException) -> ItemFailure:
    if isinstance(e, CmbertError):
        return ItemFailure(item_id, e.path, stage, e.reason, type(e).__name__)
    path = getattr(e, "filename", None)
    return ItemFailure(item_id, None if path is None else str(path), stage,
                       f"{type(e).__name__}: {e}", type(e).__name__)


def plan_stage(
    items: Iterable[T],
    key: Callable[[T], ItemKey],
    is_current: Callable[[T, ItemKey], Check],
    *,
    stage: str,
    item_id: Callable[[T], str],
    force: bool = False,
    prior_failures: Sequence[ItemFailure] = (),
) -> StagePlan:
    """Steps 1 and 2 of the module docstring: key every item and keep those not current."""
    items = list(items)
    plan = StagePlan(stage, len(items) + len(prior_failures), [], 0, list(prior_failures),
                     Counter())
    for item in items:
        try:
            k = key(item)
            check = Check.missing() if force else is_current(item, k)
        except (CmbertError, OSError) as e:
            plan.failures.append(_failure(item_id(item), stage, e))
            continue
        if check.current:
            plan.skipped += 1
            continue
        if check.changed:
            plan.changed.update(check.changed)
            log.info("%s: recomputing %s: %s changed", stage, item_id(item),
                     ", ".join(check.changed))
        plan.pending.append((item, k))
    if plan.changed:
        log.warning("%s: recomputing %d item(s) whose key changed (%s)", stage,
                    sum(1 for _ in plan.pending), ", ".join(
                        f"{name}: {n}" for name, n in sorted(plan.changed.items())))
    log.info("%s: %d to compute, %d already current, %d failed before starting", stage,
             len(plan.pending), plan.skipped, len(plan.failures))
    return plan


def run_stage(
    items: Iterable[T],
    key: Callable[[T], ItemKey],
    is_current: Callable[[T, ItemKey], Check],
    work: Callable[[T, ItemKey], Any],
    persist: Callable[[T, ItemKey, Any], None] | None = None,
    on_progress: ProgressCallback | None = None,
    *,
    stage: str,
    item_id: Callable[[T], str],
    executor: Executor | None = None,
    jobs: int = 1,
    force: bool = False,
    prior_failures: Sequence[ItemFailure] = (),
) -> BatchSummary:
    """Run one batch stage (see the module docstring); never raises per item.

    ``work`` must be picklable (a module-level function or a ``functools.partial`` of one)
    unless it runs in this process. Without ``executor`` one is opened from ``jobs``.
    ``force`` recomputes every item (``is_current`` is not asked). ``prior_failures`` (e.g.
    corpus items without a transcript) are counted and reported too.
    """
    plan = plan_stage(items, key, is_current, stage=stage, item_id=item_id, force=force,
                      prior_failures=prior_failures)
    n_prior = len(plan.failures)
    n_before = plan.skipped + n_prior
    state = {"done": 0, "failed": n_prior, "ok": 0}

    def progress() -> None:
        if on_progress is not None:
            on_progress(n_before + state["done"], state["failed"], plan.total)

    progress()
    if plan.pending:
        ctx = contextlib.nullcontext(executor) if executor is not None else open_executor(jobs)
        with ctx as ex:
            for i, ok, payload in ex.run(work, plan.pending):
                item, k = plan.pending[i]
                if ok:
                    try:
                        if persist is not None:
                            persist(item, k, payload)
                        state["ok"] += 1
                    except (CmbertError, OSError) as e:
                        plan.failures.append(_failure(item_id(item), stage, e))
                        state["failed"] += 1
                else:
                    path, reason, etype, tb = payload
                    if tb:
                        log.debug("%s failed for %s:\n%s", stage, item_id(item), tb)
                    plan.failures.append(ItemFailure(item_id(item), path, stage, reason, etype))
                    state["failed"] += 1
                state["done"] += 1
                progress()
    for f in plan.failures[len(prior_failures):]:
        log.info("%s failed: %s (%s): %s", stage, f.item_id, f.path, f.reason)
    return plan.summary(state["ok"])
