"""Typed configuration: every stage's settings with their defaults, and the one loader.

Each stage has one frozen dataclass, the only place its defaults are written:

    DatasetConfig   which corpus adapter, its options, how speakers are split
    AlignConfig     which aligner, its options, worker processes
    FeaturesConfig  which acoustic feature set, worker processes, keep frames or not
    ModelConfig     which model, encoder, input handling, + ``options``: the model's own frozen
                    options dataclass (:data:`MODEL_OPTIONS`: NoOptions, MagOptions, CmsOptions)
    TrainConfig     optimisation, device, seeds
    PredictConfig   the example clip a pipeline scores after training

A recipe (``pipelines/*.toml``), ``--set key=value`` and the command-line flags all become
nested plain dicts that go through :func:`build` (one section) or :func:`config_from_dict` (a
whole :class:`PipelineConfig`). ``build`` is strict: a key that is not a field is a
:class:`ConfigError` naming it and listing the known ones; a value of the wrong type, or out
of range (checked in each dataclass's ``__post_init__``), is a ConfigError naming the key
(``train.batch_size must be at least 1, got 0``) before any work starts.

    >>> config = load_recipe("pipelines/demo.toml", ["train.epochs=1", "model.model=magbert",
    ...                                               "model.options.beta=0.5"])
    >>> config.model.options                 # MagOptions(mag_layer=1, beta=0.5, ...)
    >>> to_toml(config)                      # the effective recipe, reads back to ``config``

This module imports neither torch nor any backend, so that the command line can show its
choices (:data:`MODEL_NAMES`, ...) and check a configuration in milliseconds.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w
import tomllib

from cmbert_pipe.errors import ConfigError
from cmbert_pipe.schema import ACOUSTIC_DIM, MAX_SEQ_LEN

MAX_JOBS = 256  # worker processes: a pool forks them all at once, so a typo must not fork more
DEFAULT_JOBS = 1  # worker processes of the batch stages (align, extract), CLI and recipes alike
DEFAULT_SEEDS = (0, 1, 2, 3, 4)  # the published recipe reports five seeds as mean ± std

# The names the registries accept, here so that the command line shows them as choices and a
# recipe is checked without importing a backend (importing cmbert_pipe.align or
# cmbert_pipe.acoustic costs about 0.5 s, torch about 2 s). Each registry refuses a name missing
# here, and a test keeps both sides equal.
ALIGNER_NAMES = ("pocketsphinx", "mfa")  # cmbert_pipe.align.ALIGNERS
FEATURE_SET_NAMES = ("covarep74", "egemaps", "compare")  # cmbert_pipe.acoustic.featuresets
DATASET_KINDS = ("folder", "manifest", "ravdess", "mosi")  # cmbert_pipe.datasets
SCALINGS = ("paper", "reference")
CLS_AUDIO = ("zero", "mean")
AMP_MODES = ("auto", "off", "bf16", "fp16")
BASELINES = ("audio", "tbert")  # reference models trained beside a model (TrainConfig.baselines)
LEGACY_FRAME_POOL = 1  # bundles written before ModelConfig.frame_pool read the 10 ms frames as they are
AUDIO_HEADS = ("none", "pool", "encoder")  # cmbert_pipe.model.acoustic
OBJECTIVES = ("regression", "binary", "class7")  # cmbert_pipe.model.objectives
AUDIO_NORMS = ("global", "speaker")
SELECT_METRICS = ("loss", "mae", "acc7", "acc2_has0", "f1_has0", "acc2_non0", "f1_non0",
                  "bacc2_non0", "acc2_paper", "corr")  # cmbert_pipe.metrics; loss, mae: lower


def _require(ok: bool, message: str) -> None:
    """A value check of a ``__post_init__``: ``message`` starts with the field's name."""
    if not ok:
        raise ConfigError(message)


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    _require(value in choices, f"{name} must be one of {', '.join(choices)}; got {value!r}")


# -- stages -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class DatasetConfig:
    """How a corpus on disk becomes utterances (``cmbert_pipe.datasets``)."""

    kind: str = "manifest"  # folder | manifest | ravdess | mosi
    options: dict = field(default_factory=dict)  # adapter options (ravdess: train/dev/test actors)
    dev_fraction: float = 0.1  # share of speakers put in dev when the corpus gives no split
    test_fraction: float = 0.1  # ... and in test
    limit: int = 0  # use only the first N utterances (smoke runs); 0 = all

    def __post_init__(self) -> None:
        _choice("kind", self.kind, DATASET_KINDS)
        _require(0 <= self.dev_fraction < 1, f"dev_fraction must be in [0, 1), got "
                 f"{self.dev_fraction}")
        _require(0 <= self.test_fraction < 1, f"test_fraction must be in [0, 1), got "
                 f"{self.test_fraction}")
        _require(self.dev_fraction + self.test_fraction < 1,
                 "dev_fraction + test_fraction must be less than 1")
        _require(self.limit >= 0, f"limit must be >= 0 (0 = all), got {self.limit}")


@dataclass(frozen=True)
class AlignConfig:
    """The forced aligner (``cmbert align``, the pipeline's align stage)."""

    aligner: str = "pocketsphinx"  # pocketsphinx (offline, default) | mfa
    options: dict = field(default_factory=dict)  # backend options, e.g. {max_duration_s = 120}
    jobs: int = DEFAULT_JOBS  # worker processes

    def __post_init__(self) -> None:
        _choice("aligner", self.aligner, ALIGNER_NAMES)
        _require(self.jobs >= 1, f"jobs must be at least 1, got {self.jobs}")
        _require(self.jobs <= MAX_JOBS, f"jobs must be at most {MAX_JOBS}, got {self.jobs}")


@dataclass(frozen=True)
class FeaturesConfig:
    """The acoustic features (``cmbert extract-audio``, the pipeline's extract stage)."""

    feature_set: str = "covarep74"  # covarep74 | egemaps | compare
    jobs: int = DEFAULT_JOBS  # worker processes
    keep_frames: bool = False  # also cache the (T, D) frames

    def __post_init__(self) -> None:
        _choice("feature_set", self.feature_set, FEATURE_SET_NAMES)
        _require(self.jobs >= 1, f"jobs must be at least 1, got {self.jobs}")
        _require(self.jobs <= MAX_JOBS, f"jobs must be at most {MAX_JOBS}, got {self.jobs}")


# -- models and their options -----------------------------------------------------------------
@dataclass(frozen=True)
class NoOptions:
    """Options of a model that takes none (tbert, cmbert)."""


@dataclass(frozen=True)
class MagOptions:
    """MAG-BERT options (Rahman et al., ACL 2020)."""

    mag_layer: int = 1  # the gate enters encoder layer k (1-based), before its output LayerNorm
    beta: float = 1.0  # β of eq. 5: the shift is at most β·‖z_i‖
    shift_dropout: float = 0.1  # dropout on the scaled displacement α·H
    streams: dict = field(default_factory=dict)  # extra non-verbal streams: name -> dim

    def __post_init__(self) -> None:
        _require(self.mag_layer >= 1, f"mag_layer must be >= 1 (1 = the first encoder layer), "
                 f"got {self.mag_layer}")
        _require(self.beta > 0, f"beta must be positive, got {self.beta}")
        _require(0.0 <= self.shift_dropout < 1.0,
                 f"shift_dropout must be in [0, 1), got {self.shift_dropout}")
        _require("audio" not in self.streams,
                 "streams: 'audio' is always present; name extra streams otherwise")


@dataclass(frozen=True)
class CmsOptions:
    """CMSBERT-CLR options; each part switches off on its own."""

    cms: bool = True  # context-driven modality shifting
    cms_layer: int = 1  # encoder layer (1-based) whose output LayerNorm sees the shift
    beta: float = 1.0  # MAG's β: the shift is at most β·‖z_i‖
    shift_dropout: float = 0.1
    context_dim: int = 64  # d_c of the shifting attention
    contrastive: bool = True  # InfoNCE between utterance text and audio embeddings
    contrastive_weight: float = 0.1  # λ_c
    temperature: float = 0.1  # τ
    embed_dim: int = 64  # the common space
    label_smoothing: float = 0.1  # ε of the auxiliary 7-class head
    aux_weight: float = 0.5  # λ_s; 0 removes the auxiliary head from the loss

    def __post_init__(self) -> None:
        _require(self.cms_layer >= 1, f"cms_layer must be >= 1, got {self.cms_layer}")
        _require(self.beta > 0, f"beta must be positive, got {self.beta}")
        _require(self.temperature > 0, f"temperature must be positive, got {self.temperature}")
        _require(0.0 <= self.label_smoothing < 1.0,
                 f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        _require(self.contrastive_weight >= 0,
                 f"contrastive_weight must be >= 0, got {self.contrastive_weight}")
        _require(self.aux_weight >= 0, f"aux_weight must be >= 0, got {self.aux_weight}")


#: Every model's name and the type of its options. ``cmbert_pipe.model.register`` refuses a
#: model missing here, so this is also the list of models (without importing torch).
MODEL_OPTIONS: dict[str, type] = {
    "tbert": NoOptions,
    "cmbert": NoOptions,
    "magbert": MagOptions,
    "cmsbert-clr": CmsOptions,
    "audio": NoOptions,  # the acoustic head alone, no BERT
}
MODEL_NAMES = tuple(MODEL_OPTIONS)


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model; saved as ``config.json`` in every bundle."""

    model: str = "cmbert"  # registry key: tbert | cmbert | magbert | cmsbert-clr | audio
    bert: str = ""  # encoder checkpoint: a path or hub name; "" = the embedded MiniLM
    audio_dim: int = ACOUSTIC_DIM  # columns of the word-level audio vectors
    max_len: int = MAX_SEQ_LEN  # word-pieces, [CLS] and [SEP] included
    d_proj: int = 30  # CM-BERT Conv1d(k=1) projection size d
    scaling: str = "paper"  # "paper": each modality / sqrt(||.||_2); "reference": released code
    cls_audio: str = "mean"  # audio vector at [CLS]: "zero" (paper) | "mean" of the word vectors
    dropout: float = 0.1  # hidden dropout of the fusion head and before the regressor
    attn_dropout: float = 0.3  # dropout on the multimodal attention matrix W_m
    # The model's own options: an instance of MODEL_OPTIONS[model]; a dict (or None, the
    # defaults) given here is built into one, unknown keys named.
    options: Any = None
    # The acoustic path (model/acoustic.py); "none" = the model as published.
    audio_head: str = "none"  # none | pool (mean/std/first/last word vectors) | encoder;
    # model "audio" is the head alone: "none" there means "pool"
    audio_head_dim: int = 64  # d_a, the size of the utterance audio vector
    frames: bool = False  # the encoder head also reads the 10 ms frames (cache with --frames)
    frame_pool: int = 5  # ... averaged in groups of N (N × 10 ms steps) before its convolutions
    objective: str = "regression"  # regression (MSE) | binary | class7 (model/objectives.py)
    audio_norm: str = "global"  # audio standardisation: global (train stats) | speaker
    # Modality dropout (ModDrop): in training, hide [CLS] from the acoustic fusion for this
    # share of utterances, so that the acoustic path learns to carry the score alone.
    modality_dropout: float = 0.0
    # Auxiliary audio-only objective: an output layer on the acoustic path's vector ``a`` alone,
    # trained on the same labels; its loss is added with this weight (0 = off, no layer).
    audio_aux_weight: float = 0.0
    # Start from the audio-only model (model/base.py, "start_from_audio"): the trainer first
    # trains the audio-only model with this acoustic head, copies its head and output layer in,
    # and zeroes this model's own output layer, so training starts from the audio-only model's
    # predictions and the text is learnt as what it adds (late fusion of the two logits).
    audio_start: bool = False

    def __post_init__(self) -> None:
        _choice("model", self.model, MODEL_NAMES)
        _choice("audio_head", self.audio_head, AUDIO_HEADS)
        _choice("objective", self.objective, OBJECTIVES)
        _choice("audio_norm", self.audio_norm, AUDIO_NORMS)
        _require(0 <= self.modality_dropout < 1,
                 f"modality_dropout must be in [0, 1), got {self.modality_dropout}")
        _require(self.modality_dropout == 0 or (self.audio_head != "none"
                                                and self.model not in ("audio", "tbert")),
                 "modality_dropout needs a text model with an acoustic path "
                 "(audio_head pool or encoder)")
        _require(self.audio_aux_weight >= 0,
                 f"audio_aux_weight must be >= 0 (0 = off), got {self.audio_aux_weight}")
        _require(self.audio_aux_weight == 0 or (self.audio_head != "none"
                                                and self.model not in ("audio", "tbert")),
                 "audio_aux_weight needs a text model with an acoustic path "
                 "(audio_head pool or encoder)")
        _require(not self.audio_start or (self.audio_head != "none"
                                          and self.model not in ("audio", "tbert")),
                 "audio_start needs a text model with an acoustic path "
                 "(audio_head pool or encoder)")
        _require(self.audio_head_dim >= 2,
                 f"audio_head_dim must be at least 2, got {self.audio_head_dim}")
        _require(self.frame_pool >= 1,
                 f"frame_pool must be at least 1 (1 = the 10 ms frames), got {self.frame_pool}")
        _require(not self.frames or self.audio_head == "encoder",
                 "frames = true needs audio_head = 'encoder' (only it reads frames)")
        if self.model == "audio" and self.audio_head == "none":
            object.__setattr__(self, "audio_head", "pool")  # the audio model is its head
        _require(self.model != "tbert" or self.audio_head == "none",
                 "model 'tbert' has no acoustic path (audio_head must be 'none')")
        _choice("scaling", self.scaling, SCALINGS)
        _choice("cls_audio", self.cls_audio, CLS_AUDIO)
        _require(self.max_len >= 3,
                 f"max_len must be at least 3 (CLS, one piece, SEP), got {self.max_len}")
        _require(self.audio_dim >= 1, f"audio_dim must be positive, got {self.audio_dim}")
        _require(self.d_proj >= 1, f"d_proj must be positive, got {self.d_proj}")
        _require(0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout}")
        _require(0 <= self.attn_dropout < 1,
                 f"attn_dropout must be in [0, 1), got {self.attn_dropout}")
        cls = MODEL_OPTIONS[self.model]
        options = self.options
        if isinstance(options, dict) and options and not dataclasses.fields(cls):
            raise ConfigError(f"model.options: model {self.model!r} takes no options, got "
                              f"{', '.join(sorted(options))}")
        if options is None or isinstance(options, dict):
            options = build(cls, options or {}, "model.options")
        _require(isinstance(options, cls), f"options of model {self.model!r} must be "
                 f"{cls.__name__}, got {type(options).__name__}")
        object.__setattr__(self, "options", options)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Build from a dict (a bundle's ``config.json``), rejecting unknown keys by name.
        Bundles written before the options had a type keep them under ``extra``."""
        d = dict(d)
        if "extra" in d and "options" not in d:
            d["options"] = d.pop("extra")
        d.setdefault("frame_pool", LEGACY_FRAME_POOL)  # bundles from before the option
        return build(cls, d, "model")

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)


# -- training ---------------------------------------------------------------------------------
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (the published CM-BERT recipe by default) and the seeds."""

    epochs: int = 3
    batch_size: int = 24
    eval_batch_size: int = 64
    lr_head: float = 1e-2  # fusion head (everything outside the encoder)
    lr_encoder: float = 2e-5
    weight_decay: float = 0.01  # not on biases and LayerNorm
    warmup: float = 0.1  # fraction of all steps with linear warm-up, then linear decay
    ema: float = 0.0  # EMA decay of the weights; 0 = off
    lr_fusion: float = 0.0  # fusion layers + acoustic path; 0 = lr_head (one group, as published)
    warmup_encoder: float = -1.0  # warm-up fraction of the encoder; < 0 = `warmup`
    warmup_fusion: float = -1.0  # ... of the fusion layers and acoustic path
    warmup_head: float = -1.0  # ... of the output layer
    patience: int = 0  # early stopping: stop after N epochs without a better dev score; 0 = off
    select_metric: str = "loss"  # dev score that picks the epoch: loss | mae (lower is better) |
    # acc7 | acc2_has0 | f1_has0 | acc2_non0 | f1_non0 | bacc2_non0 | acc2_paper | corr (higher)
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    amp: str = "auto"  # "auto" (bf16 on CUDA if supported, else fp16; off on CPU) | off | bf16 | fp16
    threads: int = 0  # torch CPU threads; 0 = leave as is
    max_train: int = 0  # use only the first N training examples (tiny runs); 0 = all
    seeds: tuple = DEFAULT_SEEDS  # one model per seed, reported as mean ± std
    # Reference models trained beside the model on the same splits and seeds, reported next to
    # it (summary.json "baselines", the pipeline report): "audio" = the audio-only model (its
    # acoustic head alone, no BERT: cheap), "tbert" = text only (costs as much as the model).
    baselines: tuple = ("audio",)

    def __post_init__(self) -> None:
        _require(self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}")
        _require(self.batch_size >= 1, f"batch_size must be at least 1, got {self.batch_size}")
        _require(self.eval_batch_size >= 1,
                 f"eval_batch_size must be at least 1, got {self.eval_batch_size}")
        _require(self.lr_head > 0, f"lr_head must be positive, got {self.lr_head}")
        _require(self.lr_encoder >= 0, f"lr_encoder must be >= 0, got {self.lr_encoder}")
        _require(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        _require(0 <= self.warmup < 1, f"warmup must be in [0, 1), got {self.warmup}")
        _require(0 <= self.ema < 1, f"ema must be in [0, 1) (0 = off), got {self.ema}")
        _require(self.lr_fusion >= 0, f"lr_fusion must be >= 0 (0 = lr_head), got "
                 f"{self.lr_fusion}")
        for name in ("warmup_encoder", "warmup_fusion", "warmup_head"):
            value = getattr(self, name)
            _require(value < 1, f"{name} must be below 1 (< 0 = warmup), got {value}")
        _require(self.patience >= 0, f"patience must be >= 0 (0 = off), got {self.patience}")
        _choice("select_metric", self.select_metric, SELECT_METRICS)
        _require(bool(_DEVICE.match(self.device)),
                 f"device must be auto, cpu, cuda or cuda:N; got {self.device!r}")
        _choice("amp", self.amp, AMP_MODES)
        _require(self.threads >= 0, f"threads must be >= 0 (0 = default), got {self.threads}")
        _require(self.max_train >= 0, f"max_train must be >= 0 (0 = all), got {self.max_train}")
        object.__setattr__(self, "baselines", tuple(self.baselines))
        for name in self.baselines:
            _choice("baselines", name, BASELINES)
        seeds = tuple(self.seeds)
        _require(bool(seeds) and all(isinstance(s, int) and not isinstance(s, bool)
                                     for s in seeds),
                 f"seeds must be a non-empty list of integers, got {list(seeds)!r}")
        _require(len(set(seeds)) == len(seeds), f"seeds must be distinct, got {list(seeds)}")
        object.__setattr__(self, "seeds", seeds)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["seeds"] = list(self.seeds)
        d["baselines"] = list(self.baselines)
        return d

    def optimisation(self) -> dict[str, Any]:
        """Every setting that changes a trained model (all but the list of seeds)."""
        d = self.to_dict()
        del d["seeds"], d["baselines"]
        return d


@dataclass(frozen=True)
class PredictConfig:
    """The clip a pipeline scores after training."""

    clip: str = ""  # utterance id scored after training; "" = the first test utterance
    attention_png: bool = True  # draw its attention picture (CM-BERT only)


@dataclass(frozen=True)
class PipelineConfig:
    """A whole recipe: ``cmbert run RECIPE.toml``."""

    name: str = "pipeline"  # the run's name (default output folder runs/<name>)
    data: str = ""  # corpus path (absolute once loaded)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    align: AlignConfig = field(default_factory=AlignConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["train"] = self.train.to_dict()
        return d


# -- the loader -------------------------------------------------------------------------------
def _typed(where: str, value: Any, default: Any) -> Any:
    """``value`` checked against the type of the field's ``default`` (int -> float allowed)."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    if isinstance(default, dict):
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a table, got {value!r}")
        return value
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return tuple(value)
    return value


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def build(cls: type, table: Any, where: str):
    """The dataclass ``cls`` from the plain table ``table`` of section ``where``.

    Unknown keys, values of the wrong type and values out of range are ConfigErrors that name
    the key as ``where.key``. Nested dataclass fields take a nested table."""
    if isinstance(table, cls):
        return table
    if not isinstance(table, dict):
        raise ConfigError(f"[{where}] must be a table, got {table!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        known = ", ".join(fields) or "none"
        raise ConfigError(f"unknown key {where}.{unknown[0]} (known in [{where}]: {known})")
    values = {}
    for key, value in table.items():
        default = _default(fields[key])
        if dataclasses.is_dataclass(default):
            values[key] = build(type(default), value, f"{where}.{key}")
        elif key == "options" and cls is ModelConfig:
            values[key] = value  # built by ModelConfig itself, which knows the model
        else:
            values[key] = _typed(f"{where}.{key}", value, default)
    try:
        return cls(**values)
    except ConfigError as e:
        if e.path is None and e.reason.split(" ", 1)[0].split(".", 1)[0] in fields \
                and not e.reason.startswith(where + "."):
            raise ConfigError(f"{where}.{e.reason}") from None
        raise


def config_from_dict(d: dict[str, Any]) -> PipelineConfig:
    """A :class:`PipelineConfig` from a recipe's tables; unknown keys are errors naming them."""
    try:
        return build(PipelineConfig, d, "recipe")
    except ConfigError as e:  # top-level keys are named bare: "unknown key colour"
        raise ConfigError(e.reason.replace("recipe.", "").replace("[recipe]", "the recipe"),
                          e.path) from None


def build_sections(sections: dict[str, type], values: dict[str, Any],
                   overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """Several sections at once, e.g. ``{"model": ModelConfig, "train": TrainConfig}``, from
    dotted ``values`` (``{"train.epochs": 1, "model.options.beta": 0.5}``, what a command's
    options gave) and then the ``--set`` ``overrides``. Returns section name -> dataclass."""
    tables: dict[str, Any] = {name: {} for name in sections}
    for key, value in values.items():
        *parents, last = key.split(".")
        node = tables
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    tables = apply_overrides(tables, overrides)
    unknown = sorted(set(tables) - set(sections))
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]} (known here: {', '.join(sections)})")
    return {name: build(cls, tables[name], name) for name, cls in sections.items()}


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.epochs=1"`` -> (["train", "epochs"], 1). Values are TOML, else strings."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set expects key=value, got {text!r}")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key.split("."), value


def apply_overrides(d: dict[str, Any], overrides: list[str] | tuple[str, ...],
                    cwd: Path | None = None) -> dict[str, Any]:
    """A copy of the nested tables ``d`` with every ``--set key=value`` applied in order;
    ``data=PATH`` resolves against ``cwd``."""
    d = json.loads(json.dumps(d))  # deep copy of plain data
    for text in overrides:
        path, value = parse_override(text)
        if path == ["data"] and isinstance(value, str) and value and cwd is not None:
            value = str((cwd / value).resolve())
        node = d
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {text}: {part} is not a table")
        node[path[-1]] = value
    return d


def load_recipe(path: str | Path | None, overrides: list[str] | tuple[str, ...] = (),
                cwd: str | Path | None = None) -> PipelineConfig:
    """Read a recipe TOML (or start from defaults when ``path`` is None), apply overrides.
    Relative paths in the recipe are relative to its folder; in an override, to ``cwd``."""
    cwd = Path(cwd or Path.cwd())
    d: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            d = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError("recipe not found", path) from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"not valid TOML: {e}", path) from None
        if isinstance(d.get("data"), str) and d["data"]:
            d["data"] = str((path.parent / d["data"]).resolve())
        dataset = d.get("dataset")
        options = dataset.get("options") if isinstance(dataset, dict) else None
        if isinstance(options, dict):
            for key in ("folds", "transcripts"):
                if isinstance(options.get(key), str) and options[key]:
                    options[key] = str((path.parent / options[key]).resolve())
    d = apply_overrides(d, list(overrides), cwd)
    try:
        return config_from_dict(d)
    except ConfigError as e:
        raise ConfigError(e.reason, path) from None


def to_toml(config: PipelineConfig) -> str:
    """The effective recipe as TOML (reads back to the same config)."""
    return tomli_w.dumps(config.to_dict())

