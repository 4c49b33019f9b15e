"""T-BERT: the text-only baseline of the CM-BERT paper (Yang, Xu & Gao, ACM MM 2020, §4.3):
the same encoder, ``[CLS]`` of the last layer → dropout → ``Linear_{H→K}`` (K by objective).
Audio is ignored; T-BERT has no acoustic path (``--model audio`` is the audio-only baseline)."""

from __future__ import annotations

from torch import nn

from cmbert_pipe.model.base import ModelConfig, ModelOutput, SentimentModel, register


@register("tbert")
class TBert(SentimentModel):
    has_acoustic_path = False

    def __init__(self, config: ModelConfig, encoder: nn.Module | None = None):
        super().__init__(config, encoder)
        self.dropout = nn.Dropout(config.dropout)
        self.regressor = nn.Linear(self.hidden_size, self.n_outputs)

    def forward(self, input_ids, attention_mask, token_type_ids, audio=None,
                labels=None, **_acoustic) -> ModelOutput:
        x_t = self.encode(input_ids, attention_mask, token_type_ids)  # (B, L, H)
        logits = self.regressor(self.dropout(x_t[:, 0])).float()  # (B, K)
        return self.output(logits, labels)
