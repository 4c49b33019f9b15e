"""Sentiment models on BERT word-pieces plus word-aligned audio, and the registry that names them.

``MODELS[key](config, encoder=None)`` builds a model; keys: ``"tbert"`` (text only),
``"cmbert"`` (Yang, Xu & Gao, ACM MM 2020), the fusions ``"magbert"`` and ``"cmsbert-clr"``,
and ``"audio"`` (the acoustic head alone, no BERT). Every model but T-BERT can add the
utterance-level acoustic path of :mod:`cmbert_pipe.model.acoustic` (``audio_head``).
"""

from __future__ import annotations

from cmbert_pipe.model.base import (
    MODELS,
    Explanation,
    ModelConfig,
    ModelOutput,
    SentimentModel,
    build_model,
    load_encoder,
    register,
)

# Importing a model module registers it.
from cmbert_pipe.model import tbert as _tbert  # noqa: F401
from cmbert_pipe.model import cmbert as _cmbert  # noqa: F401
from cmbert_pipe.model import magbert as _magbert  # noqa: F401
from cmbert_pipe.model import cmsbert as _cmsbert  # noqa: F401
from cmbert_pipe.model import audio as _audio  # noqa: F401

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
