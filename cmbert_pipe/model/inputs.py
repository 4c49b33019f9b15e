"""From words and word-level audio to the tensors a model takes.

Every word-piece carries the (standardised) audio vector of the word it belongs to, found with
the fast tokenizer's ``word_ids()``; ``[CLS]``, ``[SEP]`` and padding carry zeros, except that
``cls_audio="mean"`` puts the mean of the utterance's word vectors at ``[CLS]`` (docs/design.md,
"CM-BERT here"). The released CM-BERT code paired audio row *i* with word-piece *i*, which
is wrong for every word split into several pieces.

    >>> batch = prepare_batch(tokenizer, [(("hello", "world"), feats)], config, stats)
    >>> batch["input_ids"].shape, batch["audio"].shape          # (1, L), (1, L, 74)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from cmbert_pipe.errors import ModelError
from cmbert_pipe.io import atomic_write_text
from cmbert_pipe.model.base import ModelConfig, resolve_encoder

STD_FLOOR = 1e-6  # columns with (near) zero spread in training are centred, not blown up


@dataclass(frozen=True)
class AudioStats:
    """Per-column mean and standard deviation of word audio vectors in the training split."""

    mean: tuple[float, ...]  # (D,)
    std: tuple[float, ...]  # (D,)
    n_words: int = 0  # how many word vectors they were computed from

    @property
    def dim(self) -> int:
        return len(self.mean)

    @classmethod
    def identity(cls, dim: int) -> AudioStats:
        return cls(mean=(0.0,) * dim, std=(1.0,) * dim, n_words=0)

    @classmethod
    def from_features(cls, word_features: Sequence[np.ndarray], dim: int) -> AudioStats:
        """Statistics over every word vector of ``word_features`` (each (n_words, D))."""
        rows = [np.asarray(f, dtype=np.float64).reshape(-1, dim) for f in word_features]
        allw = np.concatenate(rows, axis=0) if rows else np.zeros((0, dim))
        if len(allw) == 0:
            return cls.identity(dim)
        allw = np.nan_to_num(allw, nan=0.0, posinf=0.0, neginf=0.0)
        return cls(mean=tuple(float(v) for v in allw.mean(axis=0)),
                   std=tuple(float(v) for v in allw.std(axis=0)), n_words=len(allw))

    def standardise(self, x: np.ndarray) -> np.ndarray:
        """(n, D) → (n, D) float32: ``(x - mean) / max(std, STD_FLOOR)``; NaN/inf → 0 first."""
        x = np.nan_to_num(np.asarray(x, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        std = np.maximum(np.asarray(self.std), STD_FLOOR)
        return ((x - np.asarray(self.mean)) / std).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"mean": list(self.mean), "std": list(self.std), "n_words": self.n_words}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AudioStats:
        return cls(tuple(map(float, d["mean"])), tuple(map(float, d["std"])),
                   int(d.get("n_words", 0)))

    def save(self, path) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1))


def load_tokenizer(bert: str):
    """The fast tokenizer of encoder ``bert`` ("" = embedded MiniLM); ``word_ids()`` needs it."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(resolve_encoder(bert), use_fast=True)
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot load tokenizer: {e}", bert or None) from None
    if not getattr(tok, "is_fast", False):
        raise ModelError("a fast tokenizer is needed to map word-pieces to words", bert or None)
    return tok


def word_piece_audio(
    word_ids: Sequence[int | None],  # per word-piece: index of its word, None for special/pad
    word_audio: np.ndarray | None,  # (n_words, D) standardised, or None (text only)
    dim: int,
    cls_audio: str,
) -> np.ndarray:
    """(L, D) float32: row i = audio of the word of piece i; specials and padding zeros;
    row 0 (``[CLS]``) = mean of the word vectors when ``cls_audio == "mean"``."""
    out = np.zeros((len(word_ids), dim), dtype=np.float32)
    if word_audio is None or len(word_audio) == 0:
        return out
    for i, w in enumerate(word_ids):
        if w is not None and w < len(word_audio):
            out[i] = word_audio[w]
    if cls_audio == "mean" and len(word_ids) and word_ids[0] is None:
        out[0] = word_audio.mean(axis=0)
    return out


MAX_FRAMES = 6000  # 10 ms frames kept per clip for the frame encoder (60 s); longer clips cut


def prepare_batch(
    tokenizer,
    items: Sequence[tuple],  # (words, (n_words, D) or None[, (T, D) frames or None])
    config: ModelConfig,
    audio_stats: AudioStats | None,
    labels: Sequence[float] | None = None,
    frame_stats: AudioStats | None = None,
) -> dict[str, torch.Tensor]:
    """Tokenise pre-split words (truncated to ``config.max_len`` pieces, padded to the longest
    in the batch) and attach each piece's word audio.

    Returns ``input_ids``, ``attention_mask``, ``token_type_ids`` (B, L) long, ``audio``
    (B, L, audio_dim) float32 and, with ``labels``, ``labels`` (B,) float32. Models with an
    acoustic path (``config.audio_head != "none"``) also get the word vectors themselves,
    ``word_audio`` (B, W, D) with ``word_mask`` (B, W), and with ``config.frames`` the frames,
    ``frames`` (B, T, D) with ``frame_mask`` (B, T) (standardised with ``frame_stats``).
    ``audio_stats`` None means the vectors are already standardised."""
    words = [[str(w) for w in it[0]] or [""] for it in items]
    enc = tokenizer(words, is_split_into_words=True, truncation=True,
                    max_length=config.max_len, padding="longest", return_tensors="np")
    seq_len = enc["input_ids"].shape[1]
    audio = np.zeros((len(items), seq_len, config.audio_dim), dtype=np.float32)  # (B, L, D)
    acoustic = config.audio_head != "none"
    n_words = min(config.max_len, max(len(w) for w in words)) if words else 0
    word_audio = np.zeros((len(items), max(n_words, 1), config.audio_dim), np.float32)
    word_mask = np.zeros((len(items), max(n_words, 1)), dtype=bool)
    frame_list: list[np.ndarray | None] = []
    for b, it in enumerate(items):
        ws, feats = it[0], it[1]
        frame_list.append(it[2] if len(it) > 2 else None)
        word_mask[b, :min(len(words[b]), n_words)] = True
        if feats is None:
            continue
        feats = np.asarray(feats, dtype=np.float32)
        if feats.ndim != 2 or feats.shape[1] != config.audio_dim or len(feats) != len(ws):
            raise ModelError(f"word features of shape {feats.shape} do not match "
                             f"{len(ws)} words x {config.audio_dim} columns")
        std = audio_stats.standardise(feats) if audio_stats is not None else feats
        audio[b] = word_piece_audio(enc.word_ids(b), std, config.audio_dim, config.cls_audio)
        if acoustic:
            word_audio[b, :min(len(std), n_words)] = std[:n_words]
    batch = {
        "input_ids": torch.from_numpy(enc["input_ids"].astype(np.int64)),
        "attention_mask": torch.from_numpy(enc["attention_mask"].astype(np.int64)),
        "token_type_ids": torch.from_numpy(
            enc.get("token_type_ids", np.zeros_like(enc["input_ids"])).astype(np.int64)),
        "audio": torch.from_numpy(audio),
    }
    if acoustic:
        batch["word_audio"] = torch.from_numpy(word_audio)
        batch["word_mask"] = torch.from_numpy(word_mask)
    if acoustic and config.frames:
        batch["frames"], batch["frame_mask"] = frame_batch(frame_list, config.audio_dim,
                                                           frame_stats)
    if labels is not None:
        batch["labels"] = torch.tensor(list(labels), dtype=torch.float32)
    return batch


def frame_batch(frames: Sequence[np.ndarray | None], dim: int, stats: AudioStats | None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad standardised frame matrices: ``frames`` (B, T, D) float32, ``frame_mask`` (B, T).

    A clip without frames (a cache built without ``--frames``, or text only) has an empty mask,
    so the frame encoder sees nothing from it (its summary is zero)."""
    lengths = [0 if f is None else min(len(f), MAX_FRAMES) for f in frames]
    t = max(1, max(lengths, default=0))
    out = np.zeros((len(frames), t, dim), dtype=np.float32)
    mask = np.zeros((len(frames), t), dtype=bool)
    for b, f in enumerate(frames):
        if f is None or lengths[b] == 0:
            continue
        f = np.asarray(f, dtype=np.float32)[:MAX_FRAMES]
        if f.ndim != 2 or f.shape[1] != dim:
            raise ModelError(f"frames of shape {f.shape} do not match {dim} columns")
        out[b, :len(f)] = stats.standardise(f) if stats is not None else f
        mask[b, :len(f)] = True
    return torch.from_numpy(out), torch.from_numpy(mask)
