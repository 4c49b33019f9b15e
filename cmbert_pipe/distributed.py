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
- statistics a model takes over its whole batch (CM-BERT's paper scaling divides by the norm
  of the batch tensor) are summed over ranks while training (:func:`global_sq_norm`);
- evaluation is sharded the same way and the predictions gathered in order, so metrics are
  computed on rank 0 over the whole split; only rank 0 writes bundles and summaries.

So with the same data order, one process and W processes train the same model up to float
reduction order (``tests/test_distributed.py`` states the tolerance). Without torchrun
everything here is a no-op and the trainer runs as one process.
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DistributedSampler

from cmbert_pipe.errors import ConfigError

log = logging.getLogger(__name__)
T = TypeVar("T")

TIMEOUT_S = 600.0  # s: a collective that waits this long for a dead rank gives up


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


def global_sq_norm(sq_norm: torch.Tensor) -> torch.Tensor:
    """The squared norm of a batch tensor summed over the ranks' local batches while training
    (so batch-wide statistics match one process on the global batch); as given otherwise."""
    if current().active and torch.is_grad_enabled():
        sq_norm = sq_norm.clone()
        dist.all_reduce(sq_norm)
    return sq_norm


def mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """The mean of a tensor over ranks (a per-epoch statistic, e.g. the training loss)."""
    if not current().active:
        return value
    value = value.clone()
    dist.all_reduce(value)
    return value / current().world_size


def gather_in_order(local: Any, n: int) -> list[Any]:
    """Undo :func:`shard`: the per-item results of every rank, back in the order of ``n``
    items (padding dropped). ``local`` is this rank's list, in its shard's order."""
    ctx = current()
    if not ctx.active:
        return list(local)
    parts: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(parts, list(local))
    out: list[Any] = [None] * n
    for r, part in enumerate(parts):
        for j, value in enumerate(part):
            i = r + j * ctx.world_size
            if i < n:
                out[i] = value
    return out


def barrier() -> None:
    if current().active:
        dist.barrier()
