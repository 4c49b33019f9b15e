"""Exponential moving average of model parameters: ``θ_ema ← d·θ_ema + (1−d)·θ`` after every
optimiser step (Polyak & Juditsky 1992 averaging, in its exponential form). The averaged
weights are the ones evaluated and saved when EMA is on."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


class EMA:
    """Shadow copies of every floating-point parameter of ``model`` (same device, no host sync)."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        params = dict(model.named_parameters())
        self.shadow = [params[n].detach().clone() for n in self.names]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        params = dict(model.named_parameters())
        current = [params[n].detach() for n in self.names]
        torch._foreach_mul_(self.shadow, self.decay)
        torch._foreach_add_(self.shadow, current, alpha=1.0 - self.decay)

    @contextlib.contextmanager
    @torch.no_grad()
    def applied(self, model: nn.Module) -> Iterator[nn.Module]:
        """Temporarily load the averaged weights into ``model`` (restored on exit)."""
        params = dict(model.named_parameters())
        backup = [params[n].detach().clone() for n in self.names]
        for n, s in zip(self.names, self.shadow, strict=True):
            params[n].copy_(s)
        try:
            yield model
        finally:
            for n, b in zip(self.names, backup, strict=True):
                params[n].copy_(b)
