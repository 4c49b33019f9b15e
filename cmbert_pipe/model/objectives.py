"""Training objectives and how each turns the head's logits into a sentiment score.

Every model ends in ``Linear_{H→K}``; the objective (``ModelConfig.objective``) fixes ``K``, the
loss, and the score in [-3, 3] that every metric and ``predict`` read, so the metrics are the
same whatever the objective:

- ``"regression"`` (the papers'): K = 1, MSE, score = the output itself (unbounded; metrics
  and ``predict`` clip to [-3, 3] where they need to).
- ``"binary"``: K = 1 logit ``z`` of "positive"; class-balanced binary cross-entropy on the
  sign of the label, labels equal to 0 left out of the loss; score = ``3·tanh(z/2)`` =
  ``3·(2·P(positive) − 1)``, so ``score > 0`` exactly when ``P(positive) > 0.5`` and the
  polarity metrics read the classifier's decision.
- ``"class7"``: K = 7 logits over the classes -3..3 (``round(clip(label, ±3))``); class-balanced
  cross-entropy; score = the expected class ``Σ_k P(k)·k``.

Class weights are ``n / (n_classes · n_c)`` over the training labels (King & Zeng's
"balanced" weighting, as scikit-learn's ``class_weight="balanced"``); they are stored with the
model (a buffer) so that dev losses after reloading a bundle are the same.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.nn import functional as F

OBJECTIVES = ("regression", "binary", "class7")
N_CLASSES7 = 7
SCORE_MAX = 3.0


def n_outputs(objective: str) -> int:
    return N_CLASSES7 if objective == "class7" else 1


def n_classes(objective: str) -> int:
    """Classes weighted in the loss (0 for regression)."""
    return {"regression": 0, "binary": 2, "class7": N_CLASSES7}[objective]


def class7_index(labels: torch.Tensor) -> torch.Tensor:
    """(B,) float in [-3, 3] → (B,) long 0..6: ``round(clip(y)) + 3`` (acc7's rule)."""
    return (torch.round(torch.clamp(labels.float(), -SCORE_MAX, SCORE_MAX)) + 3).long()


def score_from_logits(objective: str, logits: torch.Tensor) -> torch.Tensor:
    """logits (B, K) → score (B,) (see the module docstring)."""
    if objective == "regression":
        return logits.squeeze(-1)
    if objective == "binary":
        return SCORE_MAX * torch.tanh(logits.squeeze(-1).float() / 2)
    probs = torch.softmax(logits.float(), dim=-1)  # (B, 7)
    values = torch.arange(-3, 4, dtype=probs.dtype, device=probs.device)
    return probs @ values


def objective_loss(objective: str, logits: torch.Tensor, pred: torch.Tensor,
                   labels: torch.Tensor | None,
                   class_weight: torch.Tensor | None = None) -> torch.Tensor | None:
    """The training loss (); None without labels. ``pred`` is the score (used by MSE)."""
    if labels is None:
        return None
    if objective == "regression":
        return torch.mean((pred.float() - labels.float()) ** 2)
    if objective == "binary":
        z = logits.squeeze(-1).float()  # (B,)
        keep = (labels != 0).float()
        target = (labels > 0).float()
        w = keep if class_weight is None else keep * class_weight.float()[target.long()]
        bce = F.binary_cross_entropy_with_logits(z, target, reduction="none")
        return (w * bce).sum() / w.sum().clamp(min=1e-12)
    target = class7_index(labels)
    w = None if class_weight is None else class_weight.float()
    per = F.cross_entropy(logits.float(), target, reduction="none")
    if w is None:
        return per.mean()
    wt = w[target]
    return (wt * per).sum() / wt.sum().clamp(min=1e-12)


def balanced_class_weights(objective: str, labels: Sequence[float]) -> np.ndarray | None:
    """``n / (n_classes · n_c)`` over the training labels (classes absent get weight 1)."""
    k = n_classes(objective)
    if k == 0:
        return None
    y = np.asarray(labels, dtype=np.float64)
    if objective == "binary":
        y = y[y != 0]
        idx = (y > 0).astype(int)
    else:
        idx = (np.round(np.clip(y, -SCORE_MAX, SCORE_MAX)) + 3).astype(int)
    counts = np.bincount(idx, minlength=k).astype(np.float64)
    present = counts > 0
    w = np.ones(k)
    w[present] = len(idx) / (present.sum() * counts[present])
    return w
