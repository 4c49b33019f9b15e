"""The audio-only baseline: the acoustic head of the fusion models and an output layer, no BERT.

``a = AudioHead(word vectors [, frames])`` (model/acoustic.py) → dropout → ``Linear_{d_a→K}``,
trained by the same trainer with the same objectives, saved in the same bundle format (the
bundle keeps the tokenizer, which maps word-pieces to words in the batch, but no encoder). It
is the row that says what the audio alone carries, beside T-BERT for the text alone.

    cmbert train runs/ravdess-cache --out runs/audio --model audio --audio-head encoder
"""

from __future__ import annotations

from torch import nn

from cmbert_pipe.errors import ConfigError
from cmbert_pipe.model.base import ModelConfig, ModelOutput, SentimentModel, register


@register("audio")
class AudioOnly(SentimentModel):
    uses_encoder = False

    def __init__(self, config: ModelConfig, encoder: nn.Module | None = None):
        if config.audio_head == "none":
            raise ConfigError("model 'audio' needs an acoustic head: --audio-head pool or "
                              "--audio-head encoder")
        super().__init__(config, encoder=None)
        self.dropout = nn.Dropout(config.dropout)
        self.regressor = nn.Linear(self.audio_head.out_dim, self.n_outputs)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, audio=None,
                labels=None, word_audio=None, word_mask=None, frames=None,
                frame_mask=None) -> ModelOutput:
        if word_audio is None or word_mask is None:
            raise ConfigError("model 'audio' needs word_audio and word_mask in the batch")
        a, extras = self.audio_head(word_audio, word_mask, frames, frame_mask)  # (B, d_a)
        logits = self.regressor(self.dropout(a)).float()  # (B, K)
        return self.output(logits, labels, extras)
