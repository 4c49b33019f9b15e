"""CM-BERT: masked multimodal attention over BERT word-pieces and word-aligned audio.

Yang, Xu & Gao, "CM-BERT: Cross-Modal BERT for Text-Audio Sentiment Analysis", ACM MM 2020,
eq. 1-8. With ``X_t`` (B, L, H) the last encoder layer and ``X_a`` (B, L, A) the audio:

1. ``X̂_t = Conv1d_{H→d}(X_t)``, ``X̂_a = Conv1d_{A→d}(X_a)`` (kernel 1, no bias, d = 30);
2. scaling ``"paper"``: each divided by ``sqrt(‖X̂‖₂)`` (Frobenius norm per utterance over its
   real tokens, eq. 2-3); ``"reference"``: the released code divides only the text, by one
   detached scalar for the whole batch (``sqrt`` of the L2 norm of the flattened batch);
3. ``α_t = ReLU(X̂_t X̂_tᵀ)``, ``β_a = ReLU(X̂_a X̂_aᵀ)`` (B, L, L);
4. ``W_f = w_t·α_t + w_a·β_a + b`` (learned scalars, init 1, 1, 0);
5. ``W_m = softmax(W_f + M)``: padding columns get a large negative, padding rows are zeroed,
   so padding carries zero weight in both directions; dropout 0.3 on ``W_m``;
6. ``X_att = W_m X_t``; ``Y = LayerNorm(Dropout(Linear_{H→H}(X_att + X_t)))``;
   prediction ``Linear_{H→1}(Dropout(Y[CLS]))`` (trained here; the released code froze it).

Note: ``b`` shifts every logit of a softmax row by the same amount, so it cannot change
``W_m``; its gradient is zero (kept for fidelity to the paper, tested as such).
The fusion runs in float32 even under autocast (the masked softmax needs the range).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from cmbert_pipe.distributed import batch_norm
from cmbert_pipe.model.base import (
    Explanation,
    ModelConfig,
    ModelOutput,
    SentimentModel,
    register,
)

NEG_INF = -1e9  # additive mask for padding columns (finite: rows never become all -inf)
EPS = 1e-12


def scale_paper(x: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
    """``x / sqrt(‖x‖₂)`` per utterance, the norm over real tokens only.

    x (B, L, d), token_mask (B, L) bool → (B, L, d). An all-zero ``x`` (an utterance without
    audio) stays zero with a zero gradient: ``sqrt`` is only differentiated where its argument is
    positive (d sqrt(s)/ds is infinite at 0, and 0 · inf would turn every weight into NaN)."""
    sq = (x.pow(2) * token_mask[..., None]).sum(dim=(1, 2))  # (B,)
    pos = sq > 0
    norm = torch.where(pos, torch.sqrt(torch.where(pos, sq, torch.ones_like(sq))),
                       torch.zeros_like(sq))  # (B,): sqrt(sq), 0 where sq = 0
    return x / torch.sqrt(norm + EPS)[:, None, None]


def scale_reference(x: torch.Tensor) -> torch.Tensor:
    """The released code: one detached scalar ``sqrt(‖x.flatten()‖₂)`` for the whole batch
    (under DDP training, the whole global batch: :func:`cmbert_pipe.distributed.batch_norm`)."""
    return x / torch.sqrt(batch_norm(x.detach()) + EPS)


def masked_multimodal_attention(
    x_t_proj: torch.Tensor,  # (B, L, d) projected text
    x_a_proj: torch.Tensor,  # (B, L, d) projected audio
    token_mask: torch.Tensor,  # (B, L) bool
    w_t: torch.Tensor,  # () learned
    w_a: torch.Tensor,  # ()
    b: torch.Tensor,  # ()
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eq. 4-7 before dropout: ``(W_m, α_t, β_a)``, each (B, L, L).

    Rows of ``W_m`` for real tokens sum to 1 with zero weight on padding columns; padding rows
    are all zero."""
    alpha_t = torch.relu(x_t_proj @ x_t_proj.transpose(1, 2))  # (B, L, L)
    beta_a = torch.relu(x_a_proj @ x_a_proj.transpose(1, 2))  # (B, L, L)
    w_f = w_t * alpha_t + w_a * beta_a + b  # (B, L, L)
    col_mask = torch.where(token_mask[:, None, :], 0.0, NEG_INF).to(w_f.dtype)  # (B, 1, L)
    w_m = torch.softmax(w_f + col_mask, dim=-1) * token_mask[:, :, None]  # (B, L, L)
    return w_m, alpha_t, beta_a


@register("cmbert")
class CMBert(SentimentModel):
    """CM-BERT (see module docstring). ``audio`` (B, L, audio_dim) is already mapped to
    word-pieces and standardised by :func:`cmbert_pipe.model.inputs.prepare_batch`."""

    def __init__(self, config: ModelConfig, encoder: nn.Module | None = None):
        super().__init__(config, encoder)
        h, d = self.hidden_size, config.d_proj
        # Conv1d with kernel 1 and no bias == a bias-free Linear over the feature axis.
        self.proj_t = nn.Linear(h, d, bias=False)
        self.proj_a = nn.Linear(config.audio_dim, d, bias=False)
        self.w_t = nn.Parameter(torch.tensor(1.0))
        self.w_a = nn.Parameter(torch.tensor(1.0))
        self.b = nn.Parameter(torch.tensor(0.0))
        self.attn_dropout = nn.Dropout(config.attn_dropout)
        self.dense = nn.Linear(h, h)
        self.dense_dropout = nn.Dropout(config.dropout)
        self.LayerNorm = nn.LayerNorm(h, eps=1e-12)
        self.dropout = nn.Dropout(config.dropout)
        self.regressor = nn.Linear(h, self.n_outputs)

    def forward(self, input_ids, attention_mask, token_type_ids, audio, labels=None,
                word_audio=None, word_mask=None, frames=None, frame_mask=None) -> ModelOutput:
        x_t = self.encode(input_ids, attention_mask, token_type_ids)  # (B, L, H)
        token_mask = attention_mask.bool()  # (B, L)
        with torch.autocast(device_type=x_t.device.type, enabled=False):
            x_t32 = x_t.float()
            t = self.proj_t(x_t32)  # (B, L, d)
            a = self.proj_a(audio.float())  # (B, L, d)
            if self.config.scaling == "paper":
                t, a = scale_paper(t, token_mask), scale_paper(a, token_mask)
            else:
                t = scale_reference(t)
            w_m, alpha_t, beta_a = masked_multimodal_attention(
                t, a, token_mask, self.w_t, self.w_a, self.b)
            x_att = self.attn_dropout(w_m) @ x_t32  # (B, L, H)
            y = self.LayerNorm(self.dense_dropout(self.dense(x_att + x_t32)))  # (B, L, H)
            h, acoustic = self.fuse_acoustic(y[:, 0], word_audio, word_mask, frames, frame_mask)
            logits = self.regressor(self.dropout(h))  # (B, K)
        return self.output(logits, labels, {"W_m": w_m, "alpha_t": alpha_t, "beta_a": beta_a,
                                            **acoustic})

    def explanation(self, out: ModelOutput) -> Explanation:
        """Adds ``W_m`` and the text-only attention ``softmax(w_t·α_t + b + M)`` (W_m without
        the audio term; ``b`` cancels in the softmax)."""
        base = super().explanation(out)
        w_m = out.extras["W_m"].float()  # (B, L, L)
        token_mask = w_m.sum(-1) > 0  # (B, L) real rows sum to 1
        scores = (self.w_t.detach().float() * out.extras["alpha_t"].float()).masked_fill(
            ~token_mask[:, None, :], float("-inf"))
        text = torch.softmax(scores, dim=-1).nan_to_num(0.0) * token_mask[..., None]
        return dataclasses.replace(base, piece_attention=w_m.cpu().numpy(),
                                   piece_text_attention=text.cpu().numpy())
