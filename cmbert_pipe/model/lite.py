"""Inference without importing ``transformers``: a BERT encoder in plain torch and a tokenizer
on the ``tokenizers`` library, both built from what a bundle already holds.

Why: importing ``transformers``' BERT modelling code costs more CPU than everything else a cold
``cmbert predict`` does (it pulls in ``torch.distributed.tensor``, ``torch._dynamo`` and the
generation utilities: ~2.3 s CPU, plus ~1.7 s for ``AutoTokenizer``; docs/performance.md).
A bundle's encoder is a BERT of known architecture whose weights are in the bundle, so
:class:`BertEncoder` rebuilds it module for module under the same names as Hugging Face's
``BertModel`` (``embeddings.word_embeddings``, ``encoder.layer.N.attention.self.query``, ...):
the bundle's state dict loads unchanged and the layer-by-layer code of the shifting models
(MAG-BERT, CMS-BERT in model/magbert.py) runs on it as on ``BertModel``. The computation is
BERT's (Devlin et al. 2019, "BERT: Pre-training of Deep Bidirectional Transformers for Language
Understanding"): embeddings = word + position + token type, LayerNorm; each post-LN block is
multi-head self-attention, residual, LayerNorm, GELU feed-forward, residual, LayerNorm.
tests/test_lite_encoder.py checks outputs against ``transformers.BertModel`` and token ids /
``word_ids`` against ``AutoTokenizer`` on the same inputs.

Only used to *load* bundles for prediction (:func:`cmbert_pipe.model.bundle.load_bundle` with
``lite=True``); training builds the Hugging Face model. Encoders of another architecture
(``model_type`` other than ``bert``, relative positions, another activation) fall back to
``transformers``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

SUPPORTED_ACTIVATIONS = {"gelu": nn.functional.gelu, "relu": nn.functional.relu}


def supports(encoder_config: dict[str, Any]) -> bool:
    """Whether :class:`BertEncoder` reproduces the encoder of this (saved) config."""
    return (encoder_config.get("model_type") == "bert"
            and encoder_config.get("position_embedding_type", "absolute") == "absolute"
            and encoder_config.get("hidden_act", "gelu") in SUPPORTED_ACTIVATIONS
            and not encoder_config.get("is_decoder", False)
            and not encoder_config.get("add_cross_attention", False))


class LiteConfig:
    """The encoder config as attributes (``hidden_size``, ...), and ``to_dict()`` for saving."""

    def __init__(self, values: dict[str, Any]):
        self._values = dict(values)
        for k, v in self._values.items():
            setattr(self, k, v)

    def to_dict(self) -> dict[str, Any]:
        return dict(self._values)


class _Embeddings(nn.Module):
    def __init__(self, c: LiteConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size,
                                            padding_idx=c.to_dict().get("pad_token_id"))
        self.position_embeddings = nn.Embedding(c.max_position_embeddings, c.hidden_size)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)
        self.register_buffer("position_ids", torch.arange(c.max_position_embeddings)[None, :],
                             persistent=False)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None
                ) -> torch.Tensor:
        seq_len = input_ids.shape[1]
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = (self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
             + self.position_embeddings(self.position_ids[:, :seq_len]))  # (B, L, H)
        return self.dropout(self.LayerNorm(x))


class _SelfAttention(nn.Module):
    def __init__(self, c: LiteConfig):
        super().__init__()
        self.n_heads = c.num_attention_heads
        self.head_dim = c.hidden_size // c.num_attention_heads
        self.query = nn.Linear(c.hidden_size, c.hidden_size)
        self.key = nn.Linear(c.hidden_size, c.hidden_size)
        self.value = nn.Linear(c.hidden_size, c.hidden_size)
        self.dropout = nn.Dropout(c.attention_probs_dropout_prob)

    def forward(self, hidden: torch.Tensor, mask4d: torch.Tensor | None) -> torch.Tensor:
        b, n, _ = hidden.shape
        shape = (b, n, self.n_heads, self.head_dim)
        q = self.query(hidden).view(shape).transpose(1, 2)  # (B, heads, L, d)
        k = self.key(hidden).view(shape).transpose(1, 2)
        v = self.value(hidden).view(shape).transpose(1, 2)
        scores = torch.matmul(q, k.transpose(2, 3)) * (self.head_dim ** -0.5)  # (B, heads, L, L)
        if mask4d is not None:
            scores = scores + mask4d
        probs = self.dropout(torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype))
        return torch.matmul(probs, v).transpose(1, 2).reshape(b, n, -1)  # (B, L, H)


class _DenseNorm(nn.Module):
    """dense -> dropout -> LayerNorm(. + residual): BERT's ``BertSelfOutput``/``BertOutput``."""

    def __init__(self, d_in: int, c: LiteConfig):
        super().__init__()
        self.dense = nn.Linear(d_in, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class _Attention(nn.Module):
    def __init__(self, c: LiteConfig):
        super().__init__()
        self.self = _SelfAttention(c)
        self.output = _DenseNorm(c.hidden_size, c)

    def forward(self, hidden: torch.Tensor, mask4d: torch.Tensor | None = None
                ) -> tuple[torch.Tensor]:
        return (self.output(self.self(hidden, mask4d), hidden),)


class _Intermediate(nn.Module):
    def __init__(self, c: LiteConfig):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.intermediate_size)
        self.act = SUPPORTED_ACTIVATIONS[c.hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(x))


class _Layer(nn.Module):
    def __init__(self, c: LiteConfig):
        super().__init__()
        self.attention = _Attention(c)
        self.intermediate = _Intermediate(c)
        self.output = _DenseNorm(c.intermediate_size, c)

    def forward(self, hidden: torch.Tensor, mask4d: torch.Tensor | None = None
                ) -> tuple[torch.Tensor]:
        attn = self.attention(hidden, mask4d)[0]
        return (self.output(self.intermediate(attn), attn),)


class _Stack(nn.Module):
    def __init__(self, c: LiteConfig):
        super().__init__()
        self.layer = nn.ModuleList(_Layer(c) for _ in range(c.num_hidden_layers))


class _Pooler(nn.Module):
    def __init__(self, c: LiteConfig):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(hidden[:, 0]))


@dataclass
class EncoderOutput:
    last_hidden_state: torch.Tensor  # (B, L, H)
    pooler_output: torch.Tensor | None  # (B, H)


class BertEncoder(nn.Module):
    """``BertModel`` (with pooler) in plain torch, for a saved Hugging Face BERT config."""

    def __init__(self, encoder_config: dict[str, Any]):
        super().__init__()
        if not supports(encoder_config):
            raise ValueError("not a plain BERT encoder config")
        self.config = LiteConfig(encoder_config)
        self.embeddings = _Embeddings(self.config)
        self.encoder = _Stack(self.config)
        self.pooler = _Pooler(self.config)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> EncoderOutput:
        hidden = self.embeddings(input_ids, token_type_ids)  # (B, L, H)
        mask4d = None
        if attention_mask is not None:  # (B, L) 1/0 -> additive (B, 1, 1, L)
            keep = attention_mask[:, None, None, :].to(hidden.dtype)
            mask4d = (1.0 - keep) * torch.finfo(hidden.dtype).min
        for layer in self.encoder.layer:
            hidden = layer(hidden, mask4d)[0]
        return EncoderOutput(hidden, self.pooler(hidden))


# -- tokenizer --------------------------------------------------------------------------------
class _Encoding(dict):
    """What ``tokenizer(...)`` returns: arrays by name, and ``word_ids(i)``."""

    def __init__(self, arrays: dict[str, Any], word_ids: list[list[int | None]]):
        super().__init__(arrays)
        self._word_ids = word_ids

    def word_ids(self, batch_index: int = 0) -> list[int | None]:
        return list(self._word_ids[batch_index])


class LiteTokenizer:
    """The bundle's fast tokenizer (``tokenizer.json``) through the ``tokenizers`` library, with
    the part of the ``transformers`` call used here: pre-split words, truncation to
    ``max_length`` pieces including [CLS]/[SEP], padding to the longest, ``word_ids``."""

    is_fast = True

    def __init__(self, path: str | Path):
        from tokenizers import Tokenizer

        path = Path(path)
        self._tok = Tokenizer.from_file(str(path / "tokenizer.json"))
        self._tok.no_truncation()
        self._tok.no_padding()
        cfg_path = path / "tokenizer_config.json"
        cfg = json.loads(cfg_path.read_text(encoding="utf-8")) if cfg_path.is_file() else {}
        self.pad_token = cfg.get("pad_token", "[PAD]")
        if isinstance(self.pad_token, dict):
            self.pad_token = self.pad_token.get("content", "[PAD]")
        pad_id = self._tok.token_to_id(self.pad_token)
        self.pad_token_id = 0 if pad_id is None else int(pad_id)
        self.model_max_length = int(min(cfg.get("model_max_length", 512), 1 << 30))

    def __call__(self, words: list[list[str]], *, is_split_into_words: bool = True,
                 truncation: bool = True, max_length: int | None = None,
                 padding: str | bool = False, return_tensors: str | None = None) -> _Encoding:
        if not is_split_into_words:
            raise ValueError("LiteTokenizer takes pre-split words only")
        limit = max_length if max_length is not None else self.model_max_length
        if truncation:
            self._tok.enable_truncation(max_length=int(limit))
        else:
            self._tok.no_truncation()
        encs = self._tok.encode_batch([list(w) for w in words], is_pretokenized=True)
        ids = [e.ids for e in encs]
        types = [e.type_ids for e in encs]
        word_ids = [list(e.word_ids) for e in encs]
        width = max((len(i) for i in ids), default=0)
        if padding in (True, "longest"):
            for k in range(len(encs)):
                extra = width - len(ids[k])
                ids[k] = list(ids[k]) + [self.pad_token_id] * extra
                types[k] = list(types[k]) + [0] * extra
                word_ids[k] = word_ids[k] + [None] * extra
        mask = [[1] * len(e.ids) + [0] * (len(ids[k]) - len(e.ids)) for k, e in enumerate(encs)]
        arrays: dict[str, Any] = {"input_ids": ids, "token_type_ids": types,
                                  "attention_mask": mask}
        if return_tensors == "np":
            arrays = {k: np.asarray(v, dtype=np.int64) for k, v in arrays.items()}
        elif return_tensors == "pt":
            arrays = {k: torch.tensor(v, dtype=torch.long) for k, v in arrays.items()}
        elif return_tensors is not None:
            raise ValueError(f"return_tensors {return_tensors!r} is not supported")
        return _Encoding(arrays, word_ids)


def lite_supported_tokenizer(path: Path) -> bool:
    """A bundle whose tokenizer.json can be read without transformers."""
    return (path / "tokenizer.json").is_file()
