"""CMSBERT-CLR: context-driven modality shifting + contrastive alignment (our reading).

Kim & Kim, "Representation Learning with Context-driven Modality Shifting and Contrastive
Learning for Multimodal Sentiment Analysis" (CMSBERT-CLR), IJCNN 2022, arXiv 2209.07424. Only
the abstract is public; it names four parts. Each is implemented as below and can be switched
off on its own (``ModelConfig.options``: CmsOptions); every choice the abstract leaves open is listed.

1. **Context-driven modality shifting** (``cms``, on by default). It extends the Multimodal
   Adaptation Gate of MAG-BERT (Rahman et al., ACL 2020; see :mod:`cmbert_pipe.model.magbert`):
   the displacement of word-piece ``i`` is computed from the *whole utterance* rather than from
   word ``i`` alone. Our reading — a single-head cross-attention from the text state of
   ``i`` over every token's text *and* audio::

       q_i = W_q y_i,   k_j = W_k [y_j ; a_j],   v_j = W_v a_j          (W_v bias-free)
       c_i = Σ_j softmax_j(q_i·k_j / √d_c) v_j                          (padding masked)
       H_i = ReLU(W_g [c_i ; y_i] + b_g) ⊙ c_i                         (MAG's gate, eq. 1-3)
       z̄_i = LayerNorm_k(z_i + Dropout(α_i H_i)),  α_i = min(‖z_i‖/‖H_i‖·β, 1)   (MAG eq. 4-5)

   with ``y = LayerNorm_k(z)`` the unshifted state of encoder layer ``k`` (``cms_layer``) and
   the same insertion point as our MAG-BERT (before layer k's pretrained output LayerNorm), so
   zero audio leaves the encoder exactly text-only. Open choices fixed here: one head;
   ``d_c = 64``; the values carry audio only (so the shift is non-verbal information, routed
   by text and audio context); ``[CLS]`` is shifted too, which gives the prediction token a
   direct, attention-weighted summary of the utterance's audio. With ``cms`` off the encoder
   runs unshifted.
2. **Contrastive learning** (``contrastive``, on; ``contrastive_weight`` λ_c = 0.1,
   ``temperature`` τ = 0.1). A symmetric InfoNCE (van den Oord et al. 2018; CLIP-style, both
   directions averaged) across the batch between an utterance-level *text* embedding and an
   *audio* embedding, each L2-normalised in a common ``d = 64`` space. Open choices: the text
   side is the last-layer ``[CLS]`` through ``Linear_{H→64}`` (the representation that
   predicts — aligning the pre-shift text instead would make every pair of utterances with the
   same words a false negative, e.g. all of RAVDESS); the audio side is the mean of the word
   audio vectors over real word-pieces (:func:`utterance_audio`) through
   ``Linear_{A→H}``–GELU–``Linear_{H→64}``.
3. **Exponential moving average** of the parameters: a trainer option (``--ema DECAY``,
   :mod:`cmbert_pipe.model.ema`), evaluated and saved with the averaged weights; not part of
   this module.
4. **Label smoothing** (``label_smoothing`` ε = 0.1, ``aux_weight`` λ_s = 0.5). The abstract
   names label smoothing but a regression model has no labels to smooth; our reading: an
   auxiliary 7-class head on ``[CLS]`` (classes ``round(clip(y, -3, 3)) + 3``, the acc7 bins)
   trained with label-smoothed cross-entropy beside the MSE regression head; the prediction
   stays the regression output. ``label_smoothing = 0`` keeps the head with hard targets;
   ``aux_weight = 0`` removes it.

Loss = MSE + λ_s·CE_ε + λ_c·InfoNCE in training; in eval mode the loss is the MSE alone, so that
the trainer's best-dev-loss epoch selection compares like with like across models.

``extras``: ``"gate"`` (B, L) relative shift ``‖α_i H_i‖/‖z_i‖`` per word-piece;
``"context_attn"`` (B, L, L) the shifting attention (row i: where word-piece i took its
non-verbal information from); ``"class_logits"`` (B, 7); ``"loss_mse"``, ``"loss_cls"``,
``"loss_contrastive"`` () when labels were given.

    >>> cfg = ModelConfig(model="cmsbert-clr", options={"contrastive": False})
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from cmbert_pipe.config import CmsOptions
from cmbert_pipe.errors import ConfigError
from cmbert_pipe.model.base import ModelConfig, ModelOutput, SentimentModel, register
from cmbert_pipe.model.magbert import (
    encode_with_shift,
    encoder_layers,
    norm_ratio_scale,
    relative_shift,
)

N_CLASSES = 7  # acc7 bins -3..3
NEG_INF = -1e9


def info_nce(text: torch.Tensor, audio: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE (van den Oord et al., 2018, "Representation Learning with Contrastive
    Predictive Coding"; both directions as in CLIP, Radford et al., 2021).

    text, audio (B, d): the i-th rows are a positive pair, every other row of the batch a
    negative. Both are L2-normalised here; returns the mean of the text→audio and audio→text
    cross-entropies (). With unit vectors the minimum over all inputs is reached when each
    pair coincides and the pairs are as far apart as possible."""
    t = F.normalize(text.float(), dim=-1)
    a = F.normalize(audio.float(), dim=-1)
    logits = t @ a.T / temperature  # (B, B)
    target = torch.arange(t.shape[0], device=t.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def sentiment_classes(labels: torch.Tensor) -> torch.Tensor:
    """(B,) float in [-3, 3] → (B,) long in 0..6: the acc7 bin ``round(clip(y)) + 3``."""
    return (torch.round(torch.clamp(labels.float(), -3.0, 3.0)) + 3).long()


def utterance_audio(audio: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the word audio vectors over real word-pieces (B, A): tokens that are padding or
    carry an all-zero vector ([SEP], [CLS] under ``cls_audio="zero"``) are left out."""
    words = (token_mask & (audio.abs().sum(-1) > 0)).to(audio.dtype)[..., None]  # (B, L, 1)
    return (audio * words).sum(1) / words.sum(1).clamp(min=1.0)


class ContextModalityShift(nn.Module):
    """The context-driven displacement of part 1 (see module docstring).

    forward(z (B, L, H) pre-norm residual, y (B, L, H) unshifted state, token_mask (B, L),
    audio (B, L, A)) → (dropout(α·H) (B, L, H), {"gate": (B, L), "context_attn": (B, L, L)})."""

    def __init__(self, hidden_size: int, audio_dim: int, context_dim: int, beta: float,
                 dropout: float):
        super().__init__()
        self.beta = beta
        self.query = nn.Linear(hidden_size, context_dim)
        self.key = nn.Linear(hidden_size + audio_dim, context_dim)
        self.value = nn.Linear(audio_dim, hidden_size, bias=False)  # zero audio → zero values
        self.gate = nn.Linear(2 * hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.scale = 1.0 / math.sqrt(context_dim)

    def forward(self, z, y, token_mask, audio):
        a = audio.to(y.dtype)
        scores = self.query(y) @ self.key(torch.cat([y, a], dim=-1)).transpose(1, 2)  # (B, L, L)
        scores = scores * self.scale + torch.where(token_mask[:, None, :], 0.0, NEG_INF)
        attn = torch.softmax(scores, dim=-1)  # (B, L, L)
        context = attn @ self.value(a)  # (B, L, H)
        h = torch.relu(self.gate(torch.cat([context, y], dim=-1))) * context  # (B, L, H)
        h = h * token_mask[..., None]
        shift, _alpha = norm_ratio_scale(z, h, self.beta)
        return self.dropout(shift), {"gate": relative_shift(shift, z).detach(),
                                     "context_attn": attn.detach()}


@register("cmsbert-clr")
class CmsBertClr(SentimentModel):
    """CMSBERT-CLR, our reading (see module docstring)."""

    def __init__(self, config: ModelConfig, encoder: nn.Module | None = None):
        super().__init__(config, encoder)
        self.options: CmsOptions = config.options
        opt, h = self.options, self.hidden_size
        n_layers = len(encoder_layers(self.encoder))
        if opt.cms_layer > n_layers:
            raise ConfigError(f"cms_layer {opt.cms_layer} is past the encoder's {n_layers} layers")
        self.shift = ContextModalityShift(h, config.audio_dim, opt.context_dim, opt.beta,
                                          opt.shift_dropout)
        self.text_embed = nn.Linear(h, opt.embed_dim)
        self.audio_embed = nn.Sequential(nn.Linear(config.audio_dim, h), nn.GELU(),
                                         nn.Linear(h, opt.embed_dim))
        self.dropout = nn.Dropout(config.dropout)
        self.regressor = nn.Linear(h, self.n_outputs)
        self.classifier = nn.Linear(h, N_CLASSES)

    def forward(self, input_ids, attention_mask, token_type_ids, audio, labels=None,
                word_audio=None, word_mask=None, frames=None, frame_mask=None) -> ModelOutput:
        opt = self.options
        token_mask = attention_mask.bool()  # (B, L)
        if opt.cms:
            hidden, extras = encode_with_shift(
                self.encoder, input_ids, attention_mask, token_type_ids, opt.cms_layer,
                lambda z, y, m: self.shift(z, y, m, audio))  # (B, L, H)
        else:
            hidden, extras = self.encode(input_ids, attention_mask, token_type_ids), {}
        h_cls, acoustic = self.fuse_acoustic(hidden[:, 0], word_audio, word_mask, frames,
                                             frame_mask)
        cls = self.dropout(h_cls)  # (B, H)
        main = self.output(self.regressor(cls).float(), labels, acoustic)  # (B, K) logits
        pred = main.pred  # (B,)
        class_logits = self.classifier(cls).float()  # (B, 7)
        extras = dict(extras, class_logits=class_logits.detach(), **acoustic)
        loss = None
        if labels is not None:
            mse = main.loss  # the objective's loss (MSE for regression)
            loss = mse
            extras["loss_mse"] = mse.detach()
            if self.training and opt.aux_weight > 0:
                ce = F.cross_entropy(class_logits, sentiment_classes(labels),
                                     label_smoothing=opt.label_smoothing)
                loss = loss + opt.aux_weight * ce
                extras["loss_cls"] = ce.detach()
            if (self.training and opt.contrastive and opt.contrastive_weight > 0
                    and hidden.shape[0] > 1):
                utt_audio = utterance_audio(audio, token_mask)  # (B, A)
                nce = info_nce(self.text_embed(hidden[:, 0]), self.audio_embed(utt_audio),
                               opt.temperature)
                loss = loss + opt.contrastive_weight * nce
                extras["loss_contrastive"] = nce.detach()
        return ModelOutput(pred=pred, loss=loss, extras=extras, logits=main.logits)
