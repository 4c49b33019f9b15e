"""Self-describing model bundles: everything ``predict`` needs, in one folder.

    MODEL_DIR/
      config.json          ModelConfig (which model, encoder, max_len, scaling, cls_audio, ...)
      encoder_config.json  the encoder's Hugging Face config (architecture, no weights download);
                           {} for the audio-only model
      model.safetensors    every weight of the model (encoder + head; EMA weights when used)
      tokenizer files      tokenizer.json, vocab.txt, tokenizer_config.json, ...
      audio_stats.json     per-column mean/std of word audio in the training split (with
                           audio_norm="speaker": the fallback for a clip of an unknown speaker)
      frame_stats.json     the same for the 10 ms frames (models that read frames)
      settings.json        pipeline settings: aligner and feature set (from the cache), training
      metrics.json         metrics reached, per split
      checksums.json       SHA-256 of the files above, checked on load (a flipped byte is refused)

A bundle is written to a temporary sibling folder and renamed into place, so an interrupted
save leaves the previous bundle (or none), never a half-written one.

    >>> bundle = load_bundle("runs/ravdess/seed-0")
    >>> out = bundle.model(**prepare_batch(bundle.tokenizer, items, bundle.config, bundle.audio_stats))
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cmbert_pipe.errors import CmbertError, ModelError
from cmbert_pipe.io import dir_mode, file_digest, file_mode
from cmbert_pipe.model import build_model
from cmbert_pipe.model.base import ModelConfig, SentimentModel, load_encoder
from cmbert_pipe.model.inputs import AudioStats
from cmbert_pipe.model.lite import BertEncoder, LiteTokenizer
from cmbert_pipe.model.lite import supports as lite_supports
from cmbert_pipe.outputs import unsafe_id_reason

log = logging.getLogger(__name__)

BUNDLE_FORMAT = 1
REQUIRED = ("config.json", "encoder_config.json", "model.safetensors", "audio_stats.json")
CHECKSUMS = "checksums.json"  # SHA-256 of each file in CHECKED, verified on load
CHECKED = REQUIRED + ("settings.json", "metrics.json", "tokenizer.json", "vocab.txt",
                      "tokenizer_config.json", "special_tokens_map.json")


@dataclass
class Bundle:
    model: SentimentModel
    tokenizer: Any
    config: ModelConfig
    audio_stats: AudioStats
    settings: dict[str, Any]
    metrics: dict[str, Any]
    path: Path
    frame_stats: AudioStats | None = None


def _json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str), encoding="utf-8")


def save_bundle(
    out_dir: str | Path,
    model: SentimentModel,
    tokenizer,
    audio_stats: AudioStats,
    settings: dict[str, Any],
    metrics: dict[str, Any],
    frame_stats: AudioStats | None = None,
) -> Path:
    """Write a complete bundle to ``out_dir`` (replacing any bundle there, atomically)."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        tmp.chmod(dir_mode())  # mkdtemp makes 0700; a bundle gets what the umask gives
        _json(tmp / "config.json", dict(model.config.to_dict(), bundle_format=BUNDLE_FORMAT))
        _json(tmp / "encoder_config.json",
              model.encoder.config.to_dict() if model.encoder is not None else {})
        state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        tokenizer.save_pretrained(str(tmp))
        _json(tmp / "audio_stats.json", audio_stats.to_dict())
        if frame_stats is not None:
            _json(tmp / "frame_stats.json", frame_stats.to_dict())
        _json(tmp / "settings.json", settings)
        _json(tmp / "metrics.json", metrics)
        write_checksums(tmp)
        for written in tmp.iterdir():  # safetensors writes 0600 whatever the umask says
            written.chmod(file_mode())
        old = None
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old")
            if old.exists():
                shutil.rmtree(old)
            out_dir.rename(old)
        tmp.rename(out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


@contextlib.contextmanager
def _bundle_file(path: Path) -> Iterator[None]:
    """A bundle file whose content does not make sense becomes a :class:`ModelError` naming it."""
    try:
        yield
    except CmbertError as e:
        if e.path is None:
            raise ModelError(e.reason, path) from None
        raise
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, OSError) as e:
        raise ModelError(f"malformed bundle file ({type(e).__name__}: {e})", path) from None


def write_checksums(path: str | Path) -> None:
    """(Re)write ``checksums.json`` of the bundle at ``path`` from the files it holds now."""
    path = Path(path)
    _json(path / CHECKSUMS, {name: file_digest(path / name) for name in sorted(CHECKED)
                             if (path / name).is_file()})


def verify_checksums(path: Path) -> None:
    """Compare every file listed in the bundle's ``checksums.json`` with its SHA-256: a flipped
    byte in the weights is a :class:`ModelError`, not a silently different model. Bundles
    written before checksums existed load with a warning."""
    listed = path / CHECKSUMS
    if not listed.is_file():
        log.warning("%s has no %s (written by an older version): its files are not verified",
                    path, CHECKSUMS)
        return
    sums = _read_json(listed)
    if not isinstance(sums, dict):
        raise ModelError("not a JSON object", listed)
    for name, digest in sorted(sums.items()):
        target = path / str(name)
        if unsafe_id_reason(str(name)) is not None or not target.is_file():
            raise ModelError(f"checksummed file {name!r} is missing", path)
        if file_digest(target) != digest:
            raise ModelError("file does not match its checksum in checksums.json: the bundle "
                             "is corrupt (re-train or re-copy it)", target)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelError(f"unreadable bundle file ({e})", path) from None


def read_config(path: str | Path) -> ModelConfig:
    """The :class:`ModelConfig` of a bundle, without loading its weights."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise ModelError("not a model bundle folder (no config.json)", path)
    cfg = _read_json(path / "config.json")
    cfg.pop("bundle_format", None)
    return ModelConfig.from_dict(cfg)


def load_bundle(path: str | Path, device: str | torch.device = "cpu", *,
                lite: bool = False) -> Bundle:
    """Rebuild the model of a bundle (no download: the encoder comes from its saved config and
    weights), its tokenizer and its audio statistics; the model is in eval mode on ``device``.

    ``lite=True`` (prediction) builds a plain BERT encoder and tokenizer without importing
    ``transformers`` (model/lite.py: the same weights and outputs, a few seconds less to load);
    encoders of another architecture still use ``transformers``."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_dir():
        raise ModelError("not a model bundle folder", path)
    missing = [name for name in REQUIRED if not (path / name).is_file()]
    if missing:
        raise ModelError(f"incomplete model bundle: missing {', '.join(missing)}", path)
    verify_checksums(path)
    with _bundle_file(path / "config.json"):
        cfg = _read_json(path / "config.json")
        if not isinstance(cfg, dict) or "model" not in cfg:
            raise ModelError("not a model config (a JSON object naming its model)",
                             path / "config.json")
        cfg.pop("bundle_format", None)
        config = ModelConfig.from_dict(cfg)
        enc_cfg = _read_json(path / "encoder_config.json")
        if not isinstance(enc_cfg, dict):
            raise ModelError("encoder config is not a JSON object", path / "encoder_config.json")
        from cmbert_pipe.model import MODELS  # the package import registers every model

        encoder = None  # the audio-only model has none
        lite = lite and lite_supports(enc_cfg) and (path / "tokenizer.json").is_file()
        if config.model not in MODELS or MODELS[config.model].uses_encoder:
            encoder = BertEncoder(enc_cfg) if lite else load_encoder(config.bert,
                                                                     encoder_config=enc_cfg)
        model = build_model(config, encoder=encoder)
    try:
        state = load_file(str(path / "model.safetensors"))
    except Exception as e:  # safetensors raises its own error types
        raise ModelError(f"unreadable weights ({e})", path / "model.safetensors") from None
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # tensor shapes disagree with config.json
        raise ModelError(f"weights do not match config.json ({str(e).splitlines()[-1].strip()})",
                         path / "model.safetensors") from None
    # Non-persistent buffers (e.g. position_ids) may be absent; real weights may not.
    missing_w = [k for k in result.missing_keys if not k.endswith("position_ids")]
    if missing_w or result.unexpected_keys:
        raise ModelError(f"weights do not match the config (missing {missing_w[:5]}, "
                         f"unexpected {result.unexpected_keys[:5]})", path / "model.safetensors")
    model.to(device).eval()
    try:
        if lite:
            tokenizer = LiteTokenizer(path)
        else:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(path), use_fast=True)
    except Exception as e:  # noqa: BLE001 - the tokenizers library raises plain Exception
        raise ModelError(f"unreadable tokenizer ({type(e).__name__}: {e})", path) from None
    with _bundle_file(path / "audio_stats.json"):
        stats = AudioStats.from_dict(_read_json(path / "audio_stats.json"))
        if len(stats.mean) != config.audio_dim or len(stats.std) != config.audio_dim:
            raise ModelError(f"audio statistics have {len(stats.mean)} columns, the model "
                             f"{config.audio_dim}", path / "audio_stats.json")
    frame_stats = None
    if (path / "frame_stats.json").is_file():
        with _bundle_file(path / "frame_stats.json"):
            frame_stats = AudioStats.from_dict(_read_json(path / "frame_stats.json"))
    settings, metrics = ({}, {})
    for name in ("settings.json", "metrics.json"):
        if (path / name).is_file():
            value = _read_json(path / name)
            if not isinstance(value, dict):
                raise ModelError("not a JSON object", path / name)
            settings, metrics = (value, metrics) if name == "settings.json" else (settings, value)
    return Bundle(model, tokenizer, config, stats, settings, metrics, path, frame_stats)


def from_pretrained(path: str | Path, device: str | torch.device = "cpu", *,
                    lite: bool = False) -> Bundle:
    """Alias of :func:`load_bundle` (the Hugging Face name for it)."""
    return load_bundle(path, device, lite=lite)
