"""Data-parallel training across processes with torch.distributed: the hooks the trainer calls.

    torchrun --nproc-per-node 2 -m cmbert_pipe train runs/cache --out runs/model --seeds 5
    cmbert train runs/cache --out runs/model --ddp 2          # the same, launched for you

torchrun starts one process per device and sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``;
:func:`init_from_env` joins them into one process group (NCCL on CUDA, gloo on CPU). Then:

- every rank shuffles the epoch's training order with the same seeded generator, and a
  ``DistributedSampler`` (no shuffle of its own) gives rank r the items ``r, r+W, r+2W, ...``
  of that order; with a local batch of ``batch_size / W`` the union of the ranks' k-th local
  batches is exactly the k-th batch a single process would train on;
- the model is wrapped in ``DistributedDataParallel``: gradients are averaged over ranks, which
  for equal local batch sizes is the gradient of the global batch's mean loss;
- a statistic a model takes over its whole batch (CM-BERT's ``reference`` scaling divides by
  the norm of the batch tensor) is summed over the ranks while training (:func:`batch_norm`);
- the training loss is averaged over the ranks once per epoch; rank 0 evaluates on the whole
  dev split (the same eval batches as one process, so the same epoch is kept), computes the
  metrics and is the only one to write bundles and summaries, while the others wait.

So with the same data order, one process and W processes train the same model up to float
reduction order (``tests/test_distributed.py`` states the tolerance). Without torchrun
everything here is a no-op and the trainer runs as one process.
"""

from __future__ import annotations

import datetime
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DistributedSampler

from cmbert_pipe.errors import ConfigError

log = logging.getLogger(__name__)
T = TypeVar("T")

TIMEOUT_S = 1800.0  # s: a rank waits this long in a collective (rank 0 evaluating) at most


@dataclass(frozen=True)
class DistContext:
    """This process' place in the group (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""  # "gloo" | "nccl" | "" (not distributed)

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


_CONTEXT = DistContext()


def current() -> DistContext:
    """The context set by :func:`init_from_env` (single process by default)."""
    return _CONTEXT


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def init_from_env(device: str = "auto") -> DistContext:
    """Join the process group torchrun described in the environment (no-op without one).

    ``device`` is the trainer's ``--device``: CUDA ranks use NCCL and one GPU each
    (``LOCAL_RANK``), CPU ranks gloo."""
    global _CONTEXT
    world = env_world_size()
    if world <= 1:
        return _CONTEXT
    if dist.is_initialized():
        return _CONTEXT
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    backend = "nccl" if use_cuda else "gloo"
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=TIMEOUT_S))
    _CONTEXT = DistContext(dist.get_rank(), dist.get_world_size(), local_rank, backend)
    log.info("rank %d of %d (%s)", _CONTEXT.rank, _CONTEXT.world_size, backend)
    return _CONTEXT


def shutdown() -> None:
    global _CONTEXT
    if dist.is_initialized():
        dist.destroy_process_group()
    _CONTEXT = DistContext()


def rank_device(device: torch.device) -> torch.device:
    """The device of this rank: ``cuda:LOCAL_RANK`` for a CUDA run, else ``device``."""
    ctx = current()
    if ctx.active and device.type == "cuda":
        return torch.device("cuda", ctx.local_rank)
    return device


def local_batch_size(batch_size: int) -> int:
    """Each rank's share of the global batch; the global batch must split evenly."""
    ctx = current()
    if batch_size % ctx.world_size:
        raise ConfigError(f"--batch-size {batch_size} does not split over {ctx.world_size} "
                          "processes; use a multiple of the process count")
    return batch_size // ctx.world_size


def shard(order: Sequence[T]) -> list[T]:
    """This rank's items of ``order`` (``DistributedSampler`` without its own shuffle: items
    r, r+W, ...; padded by repeating the first items when ``len(order)`` is not a multiple of
    W, so that every rank runs the same number of steps)."""
    ctx = current()
    if not ctx.active:
        return list(order)
    sampler = DistributedSampler(range(len(order)), num_replicas=ctx.world_size,
                                 rank=ctx.rank, shuffle=False, drop_last=False)
    return [order[i] for i in sampler]


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` for the training forward/backward: DistributedDataParallel when distributed."""
    if not current().active:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    # fusions switch sub-modules off by option, so some parameters may get no gradient
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)


def batch_norm(x: torch.Tensor) -> torch.Tensor:
    """``‖x.flatten()‖₂`` of a batch tensor; while training under DDP, over the global batch
    (the ranks' squared norms summed), so a batch-wide statistic matches one process. Under
    ``no_grad`` (evaluation, run by rank 0 alone) it stays local."""
    if not (current().active and torch.is_grad_enabled()):
        return torch.linalg.vector_norm(x.reshape(-1))
    sq = x.reshape(-1).float().pow(2).sum()
    dist.all_reduce(sq)
    return torch.sqrt(sq).to(x.dtype)


def mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """The mean of a tensor over ranks (a per-epoch statistic, e.g. the training loss)."""
    if not current().active:
        return value
    value = value.clone()
    dist.all_reduce(value)
    return value / current().world_size


def barrier() -> None:
    if current().active:
        dist.barrier()


def launch(nproc: int, argv: Sequence[str]) -> int:
    """Run ``cmbert ARGV`` as ``nproc`` processes under torchrun on this host; its exit code.

    ``argv`` is the command line without the launcher's own option (``--ddp N``)."""
    if nproc < 2:
        raise ConfigError(f"--ddp needs at least 2 processes, got {nproc}")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={nproc}", "-m", "cmbert_pipe", *argv]
    log.info("launching %s", " ".join(cmd))
    return subprocess.call(cmd)


def strip_option(argv: Sequence[str], name: str) -> list[str]:
    """``argv`` without ``name VALUE`` / ``name=VALUE``."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == name:
            skip = True
        elif not a.startswith(name + "="):
            out.append(a)
    return out
