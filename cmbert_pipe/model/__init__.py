"""Sentiment models on BERT word-pieces plus word-aligned audio, and the registry that names them.

``MODELS[key](config, encoder=None)`` builds a model; keys: ``"tbert"`` (text only),
``"cmbert"`` (Yang, Xu & Gao, ACM MM 2020), the fusions ``"magbert"`` and ``"cmsbert-clr"``,
and ``"audio"`` (the acoustic head alone, no BERT). Every model but T-BERT can add the
utterance-level acoustic path of :mod:`cmbert_pipe.model.acoustic` (``audio_head``).
"""

from __future__ import annotations

from torch import nn

from cmbert_pipe.errors import ConfigError
from cmbert_pipe.model.base import (
    MODELS,
    Explanation,
    ModelConfig,
    ModelOutput,
    SentimentModel,
    load_encoder,
    register,
)

# Importing a model module registers it.
from cmbert_pipe.model import tbert as _tbert  # noqa: F401
from cmbert_pipe.model import cmbert as _cmbert  # noqa: F401
from cmbert_pipe.model import magbert as _magbert  # noqa: F401
from cmbert_pipe.model import cmsbert as _cmsbert  # noqa: F401
from cmbert_pipe.model import audio as _audio  # noqa: F401


def build_model(config: ModelConfig, encoder: nn.Module | None = None) -> SentimentModel:
    """Instantiate the registered model ``config.model`` (loading the pretrained encoder unless
    ``encoder`` is given)."""
    if config.model not in MODELS:
        raise ConfigError(f"unknown model {config.model!r}; known: {', '.join(sorted(MODELS))}")
    model = MODELS[config.model](config, encoder=encoder)
    positions = getattr(getattr(model.encoder, "config", None), "max_position_embeddings", None)
    if isinstance(positions, int) and config.max_len > positions:
        raise ConfigError(f"max_len {config.max_len} is more word-pieces than the encoder has "
                          f"positions ({positions})")
    return model


__all__ = [
    "MODELS",
    "Explanation",
    "ModelConfig",
    "ModelOutput",
    "SentimentModel",
    "build_model",
    "load_encoder",
    "register",
]
