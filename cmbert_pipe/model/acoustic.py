"""The utterance-level acoustic path: an audio head and the gate that adds it to ``[CLS]``.

docs/models.md, "The acoustic path"::

    a = AudioHead(word vectors [, frames])          (B, d_a)
    g = σ(W_g [h_CLS ; a])                           (B, H)
    h = h_CLS + g ⊙ W_a a                            (B, H), W_a bias-free

Heads (``ModelConfig.audio_head``):

- ``"pool"``: mean, standard deviation, first and last word vector (what the linear probe sees),
  ``(B, 4D)`` → bias-free ``Linear_{4D→d_a}``.
- ``"encoder"``: a small learned sequence encoder over the word vectors and, when the batch has
  frames (a cache built with ``--frames``, ``ModelConfig.frames = True``), over the 10 ms frames.
  Each sequence goes through three bias-free dilated 1-D convolutions (kernel 3, dilations 1, 2,
  4, GELU, residual; the receptive field of a TDNN / x-vector front end: Snyder et al.,
  "X-vectors: robust DNN embeddings for speaker recognition", ICASSP 2018) and is summarised by
  attentive pooling (Okabe, Koshinaka & Shinoda, "Attentive statistics pooling for deep speaker
  embedding", Interspeech 2018; here the attention-weighted mean) beside max pooling over the
  valid steps. The word and frame summaries are concatenated. Before the frame convolutions
  the 10 ms frames are averaged in groups of ``frame_pool`` (``ModelConfig.frame_pool``, 5 =
  50 ms steps by default): the frame-rate subsampling of TDNN acoustic models (Peddinti, Povey &
  Khudanpur, "A time delay neural network architecture for efficient modeling of long temporal
  contexts", Interspeech 2015), which widens the receptive field five-fold, smooths the
  frame-level noise of the low-level descriptors and costs a fifth of the convolutions.

**Zero audio adds nothing.** Every layer between the audio and ``W_a a`` is bias-free and every
nonlinearity maps 0 to 0 (GELU; attention and max pooling of all-zero values are zero), so an
all-zero input gives ``a = 0`` and ``h = h_CLS`` exactly, whatever the gate says. On text-only
data (MOSI transcripts, no audio) a model with the acoustic path is therefore the model without
it, by construction (tested).
"""

from __future__ import annotations

import torch
from torch import nn

AUDIO_HEADS = ("none", "pool", "encoder")
NEG_INF = -1e9


def masked_word_stats(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean, std, first and last valid vector of each sequence.

    x (B, W, D), mask (B, W) bool → (B, 4D); all zeros for a sequence without a valid step."""
    m = mask.to(x.dtype)[..., None]  # (B, W, 1)
    n = m.sum(1)  # (B, 1)
    mean = (x * m).sum(1) / n.clamp(min=1.0)  # (B, D)
    var = (((x - mean[:, None]) * m) ** 2).sum(1) / n.clamp(min=1.0)
    std = torch.sqrt(var.clamp(min=1e-12)) * (var > 0)  # (B, D); exactly 0 for one word
    first = x[:, 0] * mask[:, :1].to(x.dtype)  # (B, D)
    last_idx = (mask.long().sum(1) - 1).clamp(min=0)  # (B,)
    last = x[torch.arange(x.shape[0], device=x.device), last_idx] * (n > 0)  # (B, D)
    return torch.cat([mean, std, first, last], dim=-1)


def average_steps(x: torch.Tensor, mask: torch.Tensor, pool: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of each group of ``pool`` consecutive valid steps.

    x (B, T, D), mask (B, T) bool → (B, ⌈T/pool⌉, D) and the number of valid steps in each
    group (B, ⌈T/pool⌉) float (a group with none has value 0: ``counts > 0`` is its mask)."""
    b, t, d = x.shape
    t2 = -(-t // pool)  # ceil
    pad = t2 * pool - t
    m = mask.to(x.dtype)
    if pad:
        x = torch.nn.functional.pad(x, (0, 0, 0, pad))
        m = torch.nn.functional.pad(m, (0, pad))
    m = m.reshape(b, t2, pool)  # (B, T2, P)
    n = m.sum(-1)  # (B, T2)
    xs = (x.reshape(b, t2, pool, d) * m[..., None]).sum(2) / n.clamp(min=1.0)[..., None]
    return xs, n


class ConvPoolEncoder(nn.Module):
    """Dilated bias-free 1-D convolutions, then attentive mean and max pooling; with
    ``pool`` > 1 the input steps are first averaged in groups of ``pool``.

    forward(x (B, T, D), mask (B, T) bool) → (B, 2C), plus the attention weights (B, T)."""

    def __init__(self, in_dim: int, channels: int, dilations=(1, 2, 4), dropout: float = 0.1,
                 pool: int = 1):
        super().__init__()
        self.pool = pool
        self.inp = nn.Conv1d(in_dim, channels, kernel_size=1, bias=False)
        self.convs = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size=3, dilation=d, padding=d, bias=False)
            for d in dilations)
        self.act = nn.GELU()
        self.dropout = nn.Dropout(dropout)
        self.score = nn.Sequential(nn.Linear(channels, channels // 2), nn.Tanh(),
                                   nn.Linear(channels // 2, 1))
        self.out_dim = 2 * channels

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask_in, counts = mask, None
        if self.pool > 1:
            x, counts = average_steps(x, mask, self.pool)  # (B, T/pool, D), (B, T/pool)
            mask = counts > 0
        m = mask.to(x.dtype)  # (B, T)
        h = self.inp((x * m[..., None]).transpose(1, 2))  # (B, C, T)
        for conv in self.convs:
            h = (h + self.dropout(self.act(conv(h)))) * m[:, None, :]  # padding stays zero
        h = h.transpose(1, 2)  # (B, T, C)
        scores = self.score(h).squeeze(-1) + torch.where(mask, 0.0, NEG_INF)  # (B, T)
        attn = torch.softmax(scores, dim=-1) * m  # (B, T)
        att_mean = (attn[..., None] * h).sum(1)  # (B, C)
        valid = mask.any(dim=1, keepdim=True)  # (B, 1)
        mx = h.masked_fill(~mask[..., None], NEG_INF).amax(1)  # (B, C)
        mx = torch.where(valid, mx, torch.zeros_like(mx))
        if counts is not None:  # each valid input step gets an equal share of its group's weight
            t_in, m_in = mask_in.shape[1], mask_in.to(attn.dtype)
            share = attn / counts.to(attn.dtype).clamp(min=1.0)
            attn = share.repeat_interleave(self.pool, dim=1)[:, :t_in] * m_in  # (B, T)
        return torch.cat([att_mean, mx], dim=-1), attn


class AudioHead(nn.Module):
    """``a = AudioHead(word vectors [, frames])`` (B, d_a); see the module docstring."""

    def __init__(self, kind: str, audio_dim: int, out_dim: int, frames: bool,
                 dropout: float = 0.1, frame_pool: int = 1):
        super().__init__()
        self.kind = kind
        self.frames = frames and kind == "encoder"
        if kind == "pool":
            self.proj = nn.Linear(4 * audio_dim, out_dim, bias=False)
            self.out_dim = out_dim
        elif kind == "encoder":
            self.words = ConvPoolEncoder(audio_dim, out_dim // 2, (1, 2), dropout)
            self.out_dim = self.words.out_dim
            if self.frames:
                self.frame_encoder = ConvPoolEncoder(audio_dim, out_dim // 2, (1, 2, 4, 8),
                                                     dropout, pool=frame_pool)
                self.out_dim += self.frame_encoder.out_dim
        else:
            raise ValueError(f"unknown audio head {kind!r}")

    def forward(self, word_audio: torch.Tensor, word_mask: torch.Tensor,
                frames: torch.Tensor | None = None, frame_mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """word_audio (B, W, D), word_mask (B, W); frames (B, T, D), frame_mask (B, T)
        → a (B, d_a) and extras (``frame_attn`` (B, T) for the frame encoder)."""
        word_mask = word_mask.bool()
        if self.kind == "pool":
            return self.proj(masked_word_stats(word_audio.float(), word_mask)), {}
        a, _ = self.words(word_audio.float(), word_mask)
        extras: dict[str, torch.Tensor] = {}
        if self.frames:
            if frames is None or frame_mask is None:
                frames = word_audio.new_zeros(word_audio.shape[0], 1, word_audio.shape[-1])
                frame_mask = torch.zeros(frames.shape[:2], dtype=torch.bool,
                                         device=frames.device)
            af, attn = self.frame_encoder(frames.float(), frame_mask.bool())
            a = torch.cat([a, af], dim=-1)
            extras["frame_attn"] = attn.detach()
        return a, extras


class AcousticGate(nn.Module):
    """``h = h_CLS + σ(W_g[h_CLS; a]) ⊙ W_a a`` (bias-free ``W_a``).

    forward(h_cls (B, H), a (B, d_a)) → (h (B, H), g (B, H))."""

    def __init__(self, hidden_size: int, audio_size: int):
        super().__init__()
        self.gate = nn.Linear(hidden_size + audio_size, hidden_size)
        self.proj = nn.Linear(audio_size, hidden_size, bias=False)

    def forward(self, h_cls: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = a.to(h_cls.dtype)
        g = torch.sigmoid(self.gate(torch.cat([h_cls, a], dim=-1)))  # (B, H)
        return h_cls + g * self.proj(a), g


def gate_weight(g: torch.Tensor, h_cls: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """How much the acoustic path moved ``[CLS]``: ``‖h − h_CLS‖ / ‖h_CLS‖`` (B,)."""
    return (torch.linalg.vector_norm(h - h_cls, dim=-1)
            / (torch.linalg.vector_norm(h_cls, dim=-1) + 1e-6))
