"""Registry of frame-level acoustic feature sets: name -> version, parameters, columns, extractor.

Every set returns frames on the project grid (:data:`~cmbert_pipe.schema.FRAME_HOP_S` hop,
frame k centred at ``FRAME_OFFSET_S + k * FRAME_HOP_S``) as ``(T, D)`` float32, so that word
pooling and the cache treat them alike. The name, version, parameters and column names of a
set travel with every cache entry made from it; the version and parameters enter the cache key.

- ``covarep74``: the COVAREP-equivalent 74 columns (Degottex, Kane, Drugman, Raitio & Scherer,
  "COVAREP — a collaborative voice analysis repository for speech technologies", ICASSP 2014),
  implemented in :mod:`cmbert_pipe.acoustic.covarep` (imported only when used).
- ``egemaps``: the 25 low-level descriptors of eGeMAPS v02 (Eyben et al., "The Geneva Minimalistic
  Acoustic Parameter Set (GeMAPS) for voice research and affective computing", IEEE TAC 2016).
- ``compare``: the 65 low-level descriptors of ComParE 2016 (Schuller et al., "The INTERSPEECH
  2016 computational paralinguistics challenge", Interspeech 2016).

The two openSMILE sets run through the ``opensmile`` package. openSMILE row k starts at
10 ms·k; its centre is taken as the middle of the window it reports for the row, and each column
is linearly interpolated onto the project grid (edge values are held at both ends).

    >>> fs = get_feature_set("egemaps")
    >>> frames = fs.extract(wave)          # (T, 25) float32, wave: (N,) float32 at 16 kHz
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cmbert_pipe import config
from cmbert_pipe.errors import ConfigError, FeatureError
from cmbert_pipe.schema import FRAME_HOP_S, FRAME_OFFSET_S, SAMPLE_RATE

log = logging.getLogger(__name__)

DEFAULT_FEATURE_SET = config.FeaturesConfig.feature_set


@dataclass(frozen=True)
class FeatureSet:
    """One feature set: what it is called, which version, how it is parametrised, its columns.

    ``extract(wave)`` takes a (N,) float32 waveform at :data:`SAMPLE_RATE` and returns
    (T, len(columns)) float32 frames on the project grid (NaN/inf allowed; callers clean them).
    """

    name: str
    version: str
    params: dict[str, Any] = field(hash=False)
    columns: tuple[str, ...]
    extract: Callable[[np.ndarray], np.ndarray] = field(repr=False, compare=False, hash=False)

    @property
    def dim(self) -> int:
        return len(self.columns)

    def describe(self) -> dict[str, Any]:
        """JSON-able description; ``key_part()`` plus the column names."""
        return dict(self.key_part(), columns=list(self.columns), dim=self.dim,
                    frame_hop_s=FRAME_HOP_S, frame_offset_s=FRAME_OFFSET_S)

    def key_part(self) -> dict[str, Any]:
        """What enters the cache key: name, version and every parameter."""
        return {"name": self.name, "version": self.version, "params": dict(self.params)}


def n_grid_frames(n_samples: int, sr: int = SAMPLE_RATE) -> int:
    """Number of grid frames whose whole 10 ms span lies inside ``n_samples`` (at least 1)."""
    hop = round(FRAME_HOP_S * sr)
    return max(1, n_samples // hop)


def grid_centres_s(n_frames: int) -> np.ndarray:
    """(T,) frame centres in seconds: 5 ms + 10 ms·k."""
    return FRAME_OFFSET_S + FRAME_HOP_S * np.arange(n_frames, dtype=np.float64)


def to_grid(values: np.ndarray, centres_s: np.ndarray, n_frames: int) -> np.ndarray:
    """Linearly interpolate (M, D) ``values`` at ``centres_s`` onto the project grid -> (T, D).

    NaN in a column is treated as 0 before interpolation (openSMILE marks undefined values so
    rarely that this only matters at the edges); edge values are held beyond the first/last
    centre. ``centres_s`` must be non-decreasing.
    """
    values = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0, posinf=0.0,
                           neginf=0.0)  # (M, D)
    target = grid_centres_s(n_frames)  # (T,)
    out = np.empty((n_frames, values.shape[1]), dtype=np.float32)
    if values.shape[0] == 0:
        out[:] = 0.0
        return out
    for d in range(values.shape[1]):
        out[:, d] = np.interp(target, centres_s, values[:, d])
    return out


# -- openSMILE --------------------------------------------------------------------------------

OPENSMILE_SETS = {"egemaps": "eGeMAPSv02", "compare": "ComParE_2016"}


@functools.cache
def _smile(set_name: str):
    """One ``opensmile.Smile`` per process and set (building it parses the config)."""
    import opensmile

    return opensmile.Smile(
        feature_set=getattr(opensmile.FeatureSet, set_name),
        feature_level=opensmile.FeatureLevel.LowLevelDescriptors,
    )


def _opensmile_extract(set_name: str, wave: np.ndarray) -> np.ndarray:
    """(N,) float32 at 16 kHz -> (T, D) float32 LLDs on the project grid."""
    smile = _smile(set_name)
    try:
        df = smile.process_signal(np.asarray(wave, dtype=np.float32), SAMPLE_RATE)
    except Exception as e:  # openSMILE reports errors as generic exceptions
        raise FeatureError(f"openSMILE {set_name} failed: {type(e).__name__}: {e}") from None
    start_s = df.index.get_level_values("start").total_seconds().to_numpy()  # (M,)
    end_s = df.index.get_level_values("end").total_seconds().to_numpy()  # (M,)
    # The last row's window is cut at the end of the signal; use the typical window length.
    window_s = float(np.median(end_s - start_s)) if len(start_s) else 0.0
    centres_s = np.maximum.accumulate(start_s + window_s / 2.0)
    return to_grid(df.to_numpy(), centres_s, n_grid_frames(len(wave)))


@functools.cache
def _opensmile_columns(set_name: str) -> tuple[str, ...]:
    return tuple(_smile(set_name).feature_names)


def _opensmile_set(name: str) -> FeatureSet:
    import opensmile

    set_name = OPENSMILE_SETS[name]
    return FeatureSet(
        name=name,
        version=f"opensmile-{opensmile.__version__}",
        params={"config": set_name, "level": "LowLevelDescriptors",
                "grid": "linear-interp-to-5ms+10ms*k"},
        columns=_opensmile_columns(set_name),
        extract=functools.partial(_opensmile_extract, set_name),
    )


# -- COVAREP-equivalent -----------------------------------------------------------------------

def _covarep_extract(wave: np.ndarray) -> np.ndarray:
    """COVAREP-74 frames; recordings longer than LONG_FILE_S go segment by segment (bounded
    memory, the same frames: covarep/segments.py)."""
    from cmbert_pipe.acoustic.covarep.segments import LONG_FILE_S, extract_covarep74_segmented

    if len(wave) > LONG_FILE_S * SAMPLE_RATE:
        return extract_covarep74_segmented(wave, SAMPLE_RATE)
    from cmbert_pipe.acoustic.covarep.pipeline import extract_covarep74

    return np.asarray(extract_covarep74(wave, fs=SAMPLE_RATE), dtype=np.float32)


def _covarep_set(name: str) -> FeatureSet:
    from cmbert_pipe.acoustic.covarep import COVAREP74_COLUMNS, COVAREP74_VERSION

    return FeatureSet(
        name=name,
        version=str(COVAREP74_VERSION),
        params={"fs": SAMPLE_RATE},
        columns=tuple(COVAREP74_COLUMNS),
        extract=_covarep_extract,
    )


_REGISTRY: dict[str, Callable[[str], FeatureSet]] = {
    "covarep74": _covarep_set,
    "egemaps": _opensmile_set,
    "compare": _opensmile_set,
}
FEATURE_SET_NAMES = tuple(_REGISTRY)
if set(FEATURE_SET_NAMES) != set(config.FEATURE_SET_NAMES):  # the names the CLI offers
    raise ImportError("cmbert_pipe.config.FEATURE_SET_NAMES differs from the feature sets here")


@functools.cache
def get_feature_set(name: str) -> FeatureSet:
    """The feature set called ``name``; :class:`ConfigError` for an unknown name."""
    if name not in _REGISTRY:
        raise ConfigError(
            f"unknown feature set {name!r} (choose one of {', '.join(FEATURE_SET_NAMES)})"
        )
    return _REGISTRY[name](name)
