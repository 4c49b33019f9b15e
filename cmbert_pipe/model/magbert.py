"""MAG-BERT: the Multimodal Adaptation Gate inside a BERT encoder.

Rahman, Hasan, Lee, Zadeh, Mao, Morency & Hoque, "Integrating Multimodal Information in Large
Pretrained Transformers", ACL 2020, eq. 1-5. For word-piece ``i`` with text state ``z_i`` (H,)
and word-aligned non-verbal vectors ``a_i`` (audio) and optionally ``v_i`` (visual, ...)::

    g_s,i = ReLU(W_gs [s_i ; z_i] + b_s)                 one gate per stream s        (eq. 1-2)
    H_i   = Σ_s g_s,i ⊙ (W_s s_i)                        displacement (bias-free)     (eq. 3)
    α_i   = min(‖z_i‖₂ / ‖H_i‖₂ · β, 1)                  norm-ratio scaling           (eq. 5)
    z̄_i   = LayerNorm(z_i + Dropout(α_i H_i))                                          (eq. 4)

so ``‖α_i H_i‖ = min(β‖z_i‖, ‖H_i‖) ≤ β‖z_i‖``: the non-verbal streams can move a word's
state by at most the fraction β of its norm.

Choices made here (the paper leaves them open or they follow from this project's contracts):

- **Where the LayerNorm comes from.** The gate is inserted in encoder layer ``k``
  (``options.mag_layer``, 1-based): the displacement is added to that layer's residual sum
  ``z = u + Dropout(FFN(u))`` just *before* the layer's own pretrained output LayerNorm, which
  then plays the role of eq. 4's LayerNorm. The published gate uses a freshly initialised
  LayerNorm after the layer; that one changes the text states even when the non-verbal input is
  zero. With the pretrained one, zero non-verbal input leaves every text state — and so the
  whole encoder — bit-identical to the text-only encoder (tested), which is what lets the
  shifting models fall back to T-BERT when audio carries nothing.
- **Bias-free displacement.** ``W_s`` have no bias and eq. 3's ``b_H`` is dropped, so zero
  non-verbal input gives ``H_i = 0`` exactly.
- **Gate input.** The gates see the normalised (unshifted) text state ``LayerNorm(z_i)``, i.e.
  what the text-only layer ``k`` would output; ``α`` uses the norm of ``z_i``, the vector that
  is displaced.
- **Streams.** Audio always; any further word-aligned stream is declared with
  ``options.streams = {"visual": 35}`` and passed to ``forward`` as a keyword
  (``visual=(B, L, 35)``).
- **Head.** As T-BERT: ``[CLS]`` of the last layer → dropout → ``Linear_{H→1}``, MSE.

``extras``: ``"gate"`` (B, L) = ``‖α_i H_i‖ / ‖z_i‖``, the relative shift of each word-piece
(0 = untouched, at most β); ``"alpha"`` (B, L) the scaling factor α_i.

    >>> cfg = ModelConfig(model="magbert", options={"mag_layer": 1, "beta": 1.0})
    >>> out = build_model(cfg)(input_ids, attention_mask, token_type_ids, audio, labels)
    >>> out.extras["gate"].shape   # (B, L)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from cmbert_pipe.config import MagOptions
from cmbert_pipe.errors import ConfigError
from cmbert_pipe.model.base import ModelConfig, ModelOutput, SentimentModel, register

NORM_EPS = 1e-6  # keeps α finite when the displacement is exactly zero

# (z pre-norm residual (B, L, H), y = LayerNorm(z) unshifted state (B, L, H), token_mask (B, L))
#   -> (displacement (B, L, H) already scaled, extras)
ShiftFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor],
                   tuple[torch.Tensor, dict[str, torch.Tensor]]]


# -- running a Hugging Face encoder layer by layer ----------------------------------------------
def extended_attention_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, L) 1/0 → additive (B, 1, 1, L): 0 on tokens, the dtype's minimum on padding, so that
    every head's softmax gives padding columns zero weight (what BertModel builds internally)."""
    keep = attention_mask[:, None, None, :].to(dtype)
    return (1.0 - keep) * torch.finfo(dtype).min


def encoder_layers(encoder: nn.Module) -> nn.ModuleList:
    """The transformer blocks of a BERT-family encoder (``encoder.encoder.layer``)."""
    try:
        return encoder.encoder.layer
    except AttributeError:
        raise ConfigError(f"{type(encoder).__name__} is not a BERT-family encoder "
                          "(no .encoder.layer); the shifting models need one") from None


def _first(x):
    return x[0] if isinstance(x, tuple) else x


def run_layer(layer: nn.Module, hidden: torch.Tensor, mask4d: torch.Tensor) -> torch.Tensor:
    """One unchanged encoder block: (B, L, H) → (B, L, H)."""
    return _first(layer(hidden, mask4d))


def run_layer_shifted(layer: nn.Module, hidden: torch.Tensor, mask4d: torch.Tensor,
                      token_mask: torch.Tensor, shift: ShiftFn
                      ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One encoder block with a displacement added before its output LayerNorm.

    The block computes ``u = Attention(hidden)``, ``z = u + Dropout(Dense(FFN(u)))`` and returns
    ``LayerNorm(z + shift(z, LayerNorm(z)))``; with a zero displacement this is exactly the
    block's own forward (BERT's post-LN ``BertLayer``)."""
    attn = _first(layer.attention(hidden, mask4d))  # (B, L, H)
    ffn_out = layer.output  # dense, dropout, LayerNorm (BertOutput and its relatives)
    z = attn + ffn_out.dropout(ffn_out.dense(layer.intermediate(attn)))  # (B, L, H)
    y = ffn_out.LayerNorm(z)  # the unshifted text state
    displacement, extras = shift(z, y, token_mask)
    return ffn_out.LayerNorm(z + displacement), extras


def encode_with_shift(encoder: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      token_type_ids: torch.Tensor, layer_k: int, shift: ShiftFn
                      ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """embeddings → layers[:k-1] → layer k with ``shift`` before its output LayerNorm →
    layers[k:]; returns the last hidden states (B, L, H) and the shift's extras."""
    layers = encoder_layers(encoder)
    if layer_k > len(layers):
        raise ConfigError(f"mag_layer {layer_k} is past the encoder's {len(layers)} layers")
    hidden = encoder.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)  # (B, L, H)
    mask4d = extended_attention_mask(attention_mask, hidden.dtype)  # (B, 1, 1, L)
    extras: dict[str, torch.Tensor] = {}
    for i, layer in enumerate(layers, start=1):
        if i == layer_k:
            hidden, extras = run_layer_shifted(layer, hidden, mask4d, attention_mask.bool(), shift)
        else:
            hidden = run_layer(layer, hidden, mask4d)
    return hidden, extras


# -- the gate --------------------------------------------------------------------------------
def norm_ratio_scale(z: torch.Tensor, h: torch.Tensor, beta: float
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 5: ``α = min(‖z‖/‖H‖ · β, 1)`` per token; returns ``(α·H, α)``.

    z, h (B, L, H) → (B, L, H), (B, L). ``‖α·H‖ ≤ β‖z‖`` always."""
    z_norm = torch.linalg.vector_norm(z, dim=-1)  # (B, L)
    h_norm = torch.linalg.vector_norm(h, dim=-1)  # (B, L)
    alpha = torch.clamp(z_norm / (h_norm + NORM_EPS) * beta, max=1.0)  # (B, L)
    return alpha[..., None] * h, alpha


def relative_shift(shift: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``‖shift_i‖ / ‖z_i‖`` (B, L): how far each word-piece's state moved, as a fraction."""
    return (torch.linalg.vector_norm(shift, dim=-1)
            / (torch.linalg.vector_norm(z, dim=-1) + NORM_EPS))


class MultimodalAdaptationGate(nn.Module):
    """Eq. 1-5 of Rahman et al. (2020) for any set of word-aligned non-verbal streams.

    ``stream_dims`` maps a stream name to its dimension; :meth:`forward` takes the text states
    and a dict of streams, each (B, L, dim), and returns the scaled displacement (B, L, H)
    (dropout applied) plus ``{"gate": (B, L), "alpha": (B, L)}``."""

    def __init__(self, hidden_size: int, stream_dims: dict[str, int], beta: float,
                 dropout: float):
        super().__init__()
        self.beta = beta
        self.gates = nn.ModuleDict(
            {name: nn.Linear(dim + hidden_size, hidden_size) for name, dim in stream_dims.items()})
        self.projections = nn.ModuleDict(
            {name: nn.Linear(dim, hidden_size, bias=False) for name, dim in stream_dims.items()})
        self.dropout = nn.Dropout(dropout)

    def displacement(self, y: torch.Tensor, streams: dict[str, torch.Tensor]) -> torch.Tensor:
        """Eq. 1-3: ``H = Σ_s ReLU(W_gs[s; y] + b_s) ⊙ W_s s`` (B, L, H) from the text state y."""
        h = torch.zeros_like(y)
        for name, gate in self.gates.items():
            s = streams[name].to(y.dtype)  # (B, L, dim)
            g = torch.relu(gate(torch.cat([s, y], dim=-1)))  # (B, L, H)
            h = h + g * self.projections[name](s)
        return h

    def forward(self, z: torch.Tensor, y: torch.Tensor, token_mask: torch.Tensor,
                streams: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        h = self.displacement(y, streams) * token_mask[..., None]  # (B, L, H), padding unmoved
        shift, alpha = norm_ratio_scale(z, h, self.beta)  # (B, L, H), (B, L)
        return self.dropout(shift), {"gate": relative_shift(shift, z).detach(),
                                     "alpha": alpha.detach()}


def check_streams(expected: dict[str, int], given: dict[str, torch.Tensor | None],
                  like: torch.Tensor) -> dict[str, torch.Tensor]:
    """The declared extra streams, each (B, L, dim); a missing one is zeros (= no shift)."""
    out = {}
    for name, dim in expected.items():
        s = given.get(name)
        if s is None:
            s = like.new_zeros(like.shape[0], like.shape[1], dim)
        elif s.shape[-1] != dim:
            raise ConfigError(f"stream {name!r} has dim {s.shape[-1]}, the model expects {dim}")
        out[name] = s
    unknown = sorted(set(given) - set(expected))
    if unknown:
        raise ConfigError(f"stream(s) not declared in options.streams: {', '.join(unknown)}")
    return out


@register("magbert")
class MagBert(SentimentModel):
    """MAG-BERT (see module docstring)."""

    def __init__(self, config: ModelConfig, encoder: nn.Module | None = None):
        super().__init__(config, encoder)
        self.options: MagOptions = config.options
        n_layers = len(encoder_layers(self.encoder))
        if self.options.mag_layer > n_layers:
            raise ConfigError(f"mag_layer {self.options.mag_layer} is past the encoder's "
                              f"{n_layers} layers")
        stream_dims = {"audio": config.audio_dim, **{k: int(v) for k, v
                                                     in self.options.streams.items()}}
        self.mag = MultimodalAdaptationGate(self.hidden_size, stream_dims, self.options.beta,
                                            self.options.shift_dropout)
        self.dropout = nn.Dropout(config.dropout)
        self.regressor = nn.Linear(self.hidden_size, self.n_outputs)

    def forward(self, input_ids, attention_mask, token_type_ids, audio, labels=None,
                word_audio=None, word_mask=None, frames=None, frame_mask=None,
                **streams) -> ModelOutput:
        streams = {"audio": audio, **check_streams(dict(self.options.streams), streams, audio)}

        def shift(z, y, token_mask):
            return self.mag(z, y, token_mask, streams)

        x = encode_with_shift(self.encoder, input_ids, attention_mask, token_type_ids,
                              self.options.mag_layer, shift)
        hidden, extras = x  # (B, L, H)
        h, acoustic = self.fuse_acoustic(hidden[:, 0], word_audio, word_mask, frames, frame_mask)
        logits = self.regressor(self.dropout(h)).float()  # (B, K)
        return self.output(logits, labels, {**extras, **acoustic})
