"""Our own scoring of PocketSphinx's en-us acoustic model, and a phone-level Viterbi
re-alignment on a frame grid of our choice (10 ms as the model was trained, or 5 ms).

PocketSphinx 5's Python API gives no per-frame senone scores, so this module reads the model
files itself and scores them with numpy:

- ``mdef`` (binary "BMDF" model definition): CI phones, triphones ``(base, left, right,
  word position)`` -> senone sequence and transition matrix. Layout as described in the
  format text the file itself carries (and sphinxbase's ``bin_mdef.h``): ten int32 counts, the
  CI phone names, the context tree, then 12-byte phone records ``(ssid, tmat, 4 bytes of
  attributes: word position + base/left/right for a triphone)`` and the 16-bit senone
  sequences.
- ``means`` / ``variances`` / ``transition_matrices``: Sphinx-3 binary parameter files
  (a text header ``s3`` ... ``endhdr``, the int32 byte-order magic 0x11223344, int32 shape
  fields, float32 data; CMUSphinx wiki, "Acoustic model format").
- ``sendump``: the mixture weights of the phonetically-tied mixture (PTM) model, one uint8 per
  (stream, Gaussian, senone): the negated weight in PocketSphinx's log base 1.0001, shifted
  right by 10 bits (the format text at the head of the file; Huggins-Daines et al. 2006,
  "PocketSphinx: a free, real-time continuous speech recognition system for hand-held
  devices").

Senone log-likelihood of a frame: for each of the three 13-dimensional streams
(cepstra, deltas, delta-deltas: ``-svspec 0-12/13-25/26-38``) the log of the weighted sum over
the 128 diagonal Gaussians of the senone's base-phone codebook, summed over the streams.

Front end (sphinxbase ``fe``, configured by the model's ``feat.params``): pre-emphasis 0.97,
25.625 ms Hamming windows, 512-point FFT power spectrum, 25 triangular mel filters (unit area,
edges rounded to FFT bins) between 130 and 6800 Hz, natural log, orthonormal DCT-II to 13
cepstra, sinusoidal lifter 22 (Juang, Rabiner & Wilpon 1987), batch cepstral mean removal;
dynamic features ``1s_c_d_dd``: delta ``c[t+2] - c[t-2]`` and delta-delta
``(c[t+3] - c[t-1]) - (c[t+1] - c[t-3])`` in 10 ms frames. At another frame step the cepstra
are computed at that step and the dynamic features over the same offsets in seconds
(at 5 ms: ``c[t+4] - c[t-4]``, ...), so that they mean what the model was trained on. The
model's noise suppression (``-remove_noise yes``) on the mel power spectrum is reproduced
(:func:`suppress_noise`).

Re-alignment (:func:`realign_words`): the utterance's phones (the pronunciations the first
alignment chose) as triphones with cross-word context, 3-state left-to-right HMMs with the
model's transition matrices, optional silence between words and at both ends, each word's
states allowed only within ``band_s`` of where the first alignment put it. At a frame step
``h`` shorter than 10 ms each frame's log-likelihood is weighted by ``h / 10 ms``, and each
HMM state either keeps one state whose self-loop probability ``p`` becomes ``p'`` with the same
expected time in seconds, ``1 / (1 - p') = (10 ms / h) / (1 - p)``, or becomes a chain of
``10 ms / h`` states with self-loop ``p`` (``expand``: the same minimum time as at 10 ms too).
Boundaries come from the best state sequence, or from the median of their posterior
distribution (forward-backward; Rabiner 1989, "A tutorial on hidden Markov models").
Optionally the Gaussian means are first adapted to the recording by MLLR from a first Viterbi
pass (:func:`mllr_adapted`), the self-training that speaker-adaptive aligners do.

Not part of the default alignment: ``benchmarks/align_accuracy.py`` measures it as an idea.
"""

from __future__ import annotations

import functools
import logging
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import logsumexp

from cmbert_pipe.errors import AlignmentError

log = logging.getLogger(__name__)

SAMPLE_RATE_HZ = 16_000
TRAINED_HOP_S = 0.010  # s: the frame step the model was trained at
WINDOW_S = 0.025625  # s: analysis window
N_FFT = 512
N_FILT, LOWER_HZ, UPPER_HZ = 25, 130.0, 6800.0
N_CEP, LIFTER = 13, 22
PRE_EMPHASIS = 0.97
LOG_BASE = 1.0001  # PocketSphinx's log base
SENSCR_SHIFT = 10  # bits: mixture weights are stored shifted right by this
VAR_FLOOR = 1e-4  # PocketSphinx -varfloor
TMAT_FLOOR = 1e-4  # PocketSphinx -tmatfloor
WPOS = "ibes"  # word position codes of triphones: internal, begin, end, single
SILENCE = "SIL"


def model_dir() -> Path:
    """The en-us acoustic model shipped in the pocketsphinx wheel."""
    from cmbert_pipe.align.pocketsphinx_backend import model_file

    return model_file("en-us")


def _read_s3(path: Path) -> tuple[dict[str, str], bytes, str]:
    """(header fields, data after the byte-order magic, struct byte order) of an s3 file."""
    raw = path.read_bytes()
    end = raw.index(b"endhdr\n") + len(b"endhdr\n")
    fields = {}
    for line in raw[:end].decode("ascii", "replace").splitlines()[1:-1]:
        key, _, value = line.strip().partition(" ")
        fields[key] = value
    magic = raw[end:end + 4]
    order = "<" if struct.unpack("<I", magic)[0] == 0x11223344 else ">"
    if struct.unpack(order + "I", magic)[0] != 0x11223344:
        raise ValueError(f"{path}: no s3 byte-order magic")
    return fields, raw[end + 4:], order


def _read_gauden(path: Path) -> np.ndarray:
    """(codebooks, streams, densities, dims) float64 from an s3 ``means`` / ``variances``."""
    _, data, order = _read_s3(path)
    n_mgau, n_feat, n_density = struct.unpack(order + "3i", data[:12])
    veclen = struct.unpack(order + f"{n_feat}i", data[12:12 + 4 * n_feat])
    off = 12 + 4 * n_feat
    (n,) = struct.unpack(order + "i", data[off:off + 4])
    if len(set(veclen)) != 1 or n != n_mgau * n_density * sum(veclen):
        raise ValueError(f"{path}: unexpected shape {n_mgau}x{n_feat}x{n_density}x{veclen}")
    values = np.frombuffer(data, dtype=order + "f4", count=n, offset=off + 4)
    return values.reshape(n_mgau, n_feat, n_density, veclen[0]).astype(np.float64)


def _read_tmat(path: Path) -> np.ndarray:
    """(matrices, emitting states, states + exit) transition probabilities."""
    _, data, order = _read_s3(path)
    n_tmat, n_rows, n_cols, n = struct.unpack(order + "4i", data[:16])
    values = np.frombuffer(data, dtype=order + "f4", count=n, offset=16)
    return values.reshape(n_tmat, n_rows, n_cols).astype(np.float64)


def _read_sendump(path: Path) -> np.ndarray:
    """(streams, densities, senones) natural-log mixture weights from a ``sendump``."""
    raw = path.read_bytes()
    order = "<"
    (n,) = struct.unpack("<i", raw[:4])
    if not 0 < n < 1000:
        order = ">"
    off, n_feat, n_clust = 0, 1, 0
    while True:
        (n,) = struct.unpack(order + "i", raw[off:off + 4])
        off += 4
        if n == 0:
            break
        text = raw[off:off + n].rstrip(b"\0").decode("ascii", "replace")
        off += n
        if text.startswith("feature_count "):
            n_feat = int(text.split()[1])
        if text.startswith("cluster_count "):
            n_clust = int(text.split()[1])
    if n_clust != 0:
        raise ValueError(f"{path}: clustered mixture weights are not supported")
    n_density, n_sen = struct.unpack(order + "2i", raw[off:off + 8])
    off += 8
    q = np.frombuffer(raw, dtype=np.uint8, count=n_feat * n_density * n_sen, offset=off)
    q = q.reshape(n_feat, n_density, n_sen).astype(np.float64)
    return -q * (1 << SENSCR_SHIFT) * np.log(LOG_BASE)


@dataclass(frozen=True, eq=False)
class Mdef:
    """Model definition: CI phone names, per phone (CI first, then triphones) its senone
    sequence and transition matrix, and the triphone index."""

    ciphones: tuple[str, ...]
    senones: np.ndarray  # (n_phone, 3) senone ids
    tmat: np.ndarray  # (n_phone,) transition matrix ids
    triphones: dict[tuple[int, int, int, int], int]  # (base, left, right, wpos) -> phone id
    n_sen: int

    def phone_id(self, base: str, left: str, right: str, wpos: str) -> int:
        """The triphone, else the same with another word position, else the CI phone."""
        ci = {p: i for i, p in enumerate(self.ciphones)}
        b = ci[base]
        lc, rc = ci.get(left, ci[SILENCE]), ci.get(right, ci[SILENCE])
        for w in (wpos,) + tuple(p for p in WPOS if p != wpos):
            pid = self.triphones.get((b, lc, rc, WPOS.index(w)))
            if pid is not None:
                return pid
        return b


def _read_mdef(path: Path) -> Mdef:
    raw = path.read_bytes()
    if raw[:4] != b"BMDF":
        raise ValueError(f"{path}: not a binary model definition (BMDF)")
    (desc_len,) = struct.unpack("<i", raw[8:12])
    off = 12 + desc_len
    (n_ci, n_phone, n_emit, _n_ci_sen, n_sen, _n_tmat, _n_sseq, _n_ctx, n_tree,
     _sil) = struct.unpack("<10i", raw[off:off + 40])
    off += 40
    names, pos = [], off
    for _ in range(n_ci):
        end = raw.index(b"\0", pos)
        names.append(raw[pos:end].decode("ascii"))
        pos = end + 1
    pos = off + ((pos - off + 3) & ~3)
    pos += 8 * n_tree  # the context tree: not needed, triphones are indexed below
    rec = np.frombuffer(raw, dtype=np.dtype([("ssid", "<i4"), ("tmat", "<i4"),
                                             ("attr", "u1", (4,))]),
                        count=n_phone, offset=pos)
    pos += 12 * n_phone
    (sseq_size,) = struct.unpack("<i", raw[pos:pos + 4])
    sseq = np.frombuffer(raw, dtype="<u2", count=sseq_size, offset=pos + 4)
    if n_emit != 3:
        raise ValueError(f"{path}: expected 3 emitting states per phone, got {n_emit}")
    sseq = sseq.reshape(-1, n_emit).astype(np.int64)
    triphones = {}
    for pid in range(n_ci, n_phone):
        wpos, base, left, right = (int(v) for v in rec["attr"][pid])
        triphones[(base, left, right, wpos)] = pid
    return Mdef(tuple(names), sseq[rec["ssid"]], rec["tmat"].astype(np.int64), triphones,
                n_sen)


@dataclass(frozen=True, eq=False)
class SphinxModel:
    """The acoustic model, ready to score: Gaussians as (cb, stream, density, dim)."""

    mdef: Mdef
    means: np.ndarray  # (n_cb, 3, 128, 13)
    inv_var: np.ndarray  # (n_cb, 3, 128, 13): 1 / variance
    log_norm: np.ndarray  # (n_cb, 3, 128): log of each Gaussian's normalising constant
    log_mixw: np.ndarray  # (3, 128, n_sen)
    log_tmat: np.ndarray  # (n_tmat, 3, 4) log transition probabilities, -inf where none
    sen2cb: np.ndarray  # (n_sen,) codebook (CI phone) of each senone


@functools.lru_cache(maxsize=1)
def load_model(path: str | None = None) -> SphinxModel:
    """Read the PTM model at ``path`` (default: the wheel's en-us model)."""
    root = Path(path) if path else model_dir()
    mdef = _read_mdef(root / "mdef")
    means = _read_gauden(root / "means")
    var = np.maximum(_read_gauden(root / "variances"), VAR_FLOOR)
    log_norm = -0.5 * (np.log(2 * np.pi * var)).sum(axis=-1)
    mixw = _read_sendump(root / "sendump")
    tmat = _read_tmat(root / "transition_matrices")
    tmat = np.where(tmat > 0, np.maximum(tmat, TMAT_FLOOR), 0.0)
    tmat /= tmat.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore"):
        log_tmat = np.log(tmat)
    sen2cb = np.zeros(mdef.n_sen, dtype=np.int64)
    # a senone belongs to the base phone of every phone using it (PTM: tied per base phone)
    bases = np.arange(len(mdef.senones))
    n_ci = len(mdef.ciphones)
    for (b, _, _, _), pid in mdef.triphones.items():
        bases[pid] = b
    bases[:n_ci] = np.arange(n_ci)
    sen2cb[mdef.senones.ravel()] = np.repeat(bases, 3)
    return SphinxModel(mdef, means, 1.0 / var, log_norm, mixw, log_tmat, sen2cb)


# -- front end --------------------------------------------------------------------------------
def _mel(hz):
    return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)


def _mel_inv(mel):
    return 700.0 * (10.0 ** (np.asarray(mel) / 2595.0) - 1.0)


@functools.lru_cache(maxsize=1)
def mel_filters() -> np.ndarray:
    """(25, 257) triangular filters, equally spaced in mel, edges rounded to FFT bins, each of
    unit area in Hz (sphinxbase ``-unit_area yes -round_filters yes``)."""
    bin_hz = SAMPLE_RATE_HZ / N_FFT
    lo, hi = _mel(LOWER_HZ), _mel(UPPER_HZ)
    step = (hi - lo) / (N_FILT + 1)
    hz = np.arange(N_FFT // 2 + 1) * bin_hz
    out = np.zeros((N_FILT, hz.size))
    for i in range(N_FILT):
        left, centre, right = (np.round(_mel_inv(lo + step * (i + j)) / bin_hz) * bin_hz
                               for j in range(3))
        up = (hz - left) / (centre - left)
        down = (right - hz) / (right - centre)
        out[i] = np.clip(np.minimum(up, down), 0.0, None) * 2.0 / (right - left)
    return out


def suppress_noise(mel: np.ndarray, hop_s: float = TRAINED_HOP_S) -> np.ndarray:
    """(T, 25) mel power spectrum with stationary noise suppressed as the model's front end
    does (``-remove_noise``, after Kim & Stern 2012, "Power-normalized cepstral coefficients
    (PNCC) for robust speech recognition": asymmetric noise filtering, temporal masking,
    spectral weight smoothing). Per frame and channel: the power smoothed over time; a noise
    level that follows it slowly up and fast down (the lower envelope); the signal above it,
    floored by its own lower envelope and masked after a recent peak; each channel then scaled
    by the mean of its neighbours' (±4 channels) gains, signal / power, clipped to [1/20, 20].
    Every per-frame forgetting factor ``a`` of the 10 ms front end becomes ``a ** (hop_s /
    10 ms)`` at another step: the same time constants in seconds."""
    r = hop_s / TRAINED_HOP_S
    lam_power, lam_up, lam_down = 0.7 ** r, 0.995 ** r, 0.5 ** r
    decay_t, mask_level, mask_gain, max_gain = 0.85 ** r, 0.85, 0.2, 20.0
    out = np.empty_like(mel)
    power = mel[0].copy()
    noise = mel[0] / max_gain
    floor = mel[0] / max_gain
    peak = np.zeros_like(mel[0])

    def lower_envelope(level: np.ndarray, x: np.ndarray) -> np.ndarray:
        a = np.where(x >= level, lam_up, lam_down)
        return a * level + (1.0 - a) * x

    n = mel.shape[1]
    lo = np.maximum(np.arange(n) - 4, 0)
    hi = np.minimum(np.arange(n) + 4, n - 1)
    for t in range(mel.shape[0]):
        power = lam_power * power + (1.0 - lam_power) * mel[t]
        noise = lower_envelope(noise, power)
        signal = np.maximum(power - noise, 1.0)
        floor = lower_envelope(floor, signal)
        peak = peak * decay_t
        unmasked = signal
        signal = np.where(signal < mask_level * peak, peak * mask_gain, signal)
        peak = np.maximum(peak, unmasked)
        signal = np.maximum(signal, floor)
        gain = np.clip(np.where(signal < max_gain * power, signal / power, max_gain),
                       1.0 / max_gain, None)
        csum = np.concatenate([[0.0], np.cumsum(gain)])
        out[t] = mel[t] * (csum[hi + 1] - csum[lo]) / (hi - lo + 1)
    return out


def cepstra(wave: np.ndarray, hop_s: float = TRAINED_HOP_S,
            remove_noise: bool = True) -> np.ndarray:
    """(T, 13) liftered MFCCs of 16 kHz ``wave`` (float in [-1, 1]) every ``hop_s``, frame k
    starting at sample ``k * hop``; noise suppressed (:func:`suppress_noise`) unless
    ``remove_noise`` is False; batch cepstral mean removed."""
    x = np.asarray(wave, dtype=np.float64) * 32768.0  # the int16 scale PocketSphinx sees
    x = np.concatenate([x[:1], x[1:] - PRE_EMPHASIS * x[:-1]])
    win, hop = round(WINDOW_S * SAMPLE_RATE_HZ), round(hop_s * SAMPLE_RATE_HZ)
    n = 1 + (x.size - win) // hop if x.size >= win else 0
    if n <= 0:
        raise AlignmentError("audio shorter than one analysis window")
    frames = x[np.arange(win)[None, :] + hop * np.arange(n)[:, None]]  # (T, 410)
    frames = frames * np.hamming(win)
    power = np.abs(np.fft.rfft(frames, n=N_FFT, axis=1)) ** 2  # (T, 257)
    mel = power @ mel_filters().T  # (T, 25)
    if remove_noise:
        mel = suppress_noise(mel, hop_s)
    logmel = np.log(np.maximum(mel, 1e-4))  # (T, 25)
    k = np.arange(N_CEP)[:, None]
    dct = np.cos(np.pi * k * (np.arange(N_FILT)[None, :] + 0.5) / N_FILT)  # (13, 25)
    dct *= np.sqrt(2.0 / N_FILT)
    dct[0] *= np.sqrt(0.5)
    cep = logmel @ dct.T  # (T, 13)
    cep *= 1.0 + (LIFTER / 2.0) * np.sin(np.pi * np.arange(N_CEP) / LIFTER)
    return cep - cep.mean(axis=0)


def dynamic_features(cep: np.ndarray, hop_s: float = TRAINED_HOP_S) -> np.ndarray:
    """(T, 39) ``1s_c_d_dd`` features: cepstra, deltas, delta-deltas over the offsets of the
    10 ms model (in frames of ``hop_s``); the edge frames repeated."""
    r = round(TRAINED_HOP_S / hop_s)
    pad = 3 * r
    c = np.concatenate([np.repeat(cep[:1], pad, 0), cep, np.repeat(cep[-1:], pad, 0)])
    t = np.arange(cep.shape[0]) + pad

    def at(k: int) -> np.ndarray:
        return c[t + k * r]

    delta = at(2) - at(-2)
    ddelta = (at(3) - at(-1)) - (at(1) - at(-3))
    return np.concatenate([cep, delta, ddelta], axis=1)


def features(wave: np.ndarray, hop_s: float = TRAINED_HOP_S,
             remove_noise: bool = True) -> np.ndarray:
    """(T, 39) model features of ``wave`` every ``hop_s``."""
    return dynamic_features(cepstra(wave, hop_s, remove_noise), hop_s)


# -- scoring ----------------------------------------------------------------------------------
def senone_loglik(model: SphinxModel, feats: np.ndarray, senones: np.ndarray) -> np.ndarray:
    """(T, len(senones)) log-likelihood of each frame under each senone: per stream the log of
    the weighted sum of its codebook's 128 Gaussians, summed over the 3 streams."""
    senones = np.asarray(senones, dtype=np.int64)
    out = np.zeros((feats.shape[0], senones.size))
    cbs = model.sen2cb[senones]
    for cb in np.unique(cbs):
        cols = np.flatnonzero(cbs == cb)
        for f in range(3):
            x = feats[:, 13 * f:13 * (f + 1)]  # (T, 13)
            m, iv = model.means[cb, f], model.inv_var[cb, f]  # (128, 13)
            quad = (x ** 2) @ iv.T - 2.0 * x @ (m * iv).T + (m ** 2 * iv).sum(axis=1)
            logg = model.log_norm[cb, f] - 0.5 * quad  # (T, 128)
            top = logg.max(axis=1, keepdims=True)
            w = np.exp(model.log_mixw[f][:, senones[cols]])  # (128, n)
            out[:, cols] += np.log(np.exp(logg - top) @ w + 1e-300) + top
    return out


# -- Viterbi ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class WordPhones:
    """A word of the utterance for the re-alignment: its phones and where the first
    alignment put it (s)."""

    phones: tuple[str, ...]
    start_s: float
    end_s: float


def _word_triphones(model: SphinxModel, words: list[WordPhones],
                    pause_s: float) -> list[list[int]]:
    """Phone ids per word: triphones with the neighbouring words' phones as cross-word
    context, silence where the first alignment has a pause of at least ``pause_s``."""
    out = []
    for i, w in enumerate(words):
        prev = words[i - 1] if i else None
        nxt = words[i + 1] if i + 1 < len(words) else None
        left_ctx = (prev.phones[-1] if prev is not None and prev.phones
                    and w.start_s - prev.end_s < pause_s else SILENCE)
        right_ctx = (nxt.phones[0] if nxt is not None and nxt.phones
                     and nxt.start_s - w.end_s < pause_s else SILENCE)
        ids = []
        n = len(w.phones)
        for j, p in enumerate(w.phones):
            left = w.phones[j - 1] if j else left_ctx
            right = w.phones[j + 1] if j + 1 < n else right_ctx
            wpos = "s" if n == 1 else "b" if j == 0 else "e" if j == n - 1 else "i"
            ids.append(model.mdef.phone_id(p, left, right, wpos))
        out.append(ids)
    return out


@dataclass(frozen=True, eq=False)
class _Graph:
    """The utterance's HMM states, ``[sil] w0 [sil] w1 ... [sil]``, 3 per phone: incoming
    arcs per state (``src``, ``log_p``; -inf where none), each state's word (-1: silence),
    frame log-likelihoods (-inf outside a word's band), where words' states begin and end."""

    src: np.ndarray  # (S, K) source state of each incoming arc
    log_p: np.ndarray  # (S, K)
    word_of: np.ndarray  # (S,)
    loglik: np.ndarray  # (T, S)
    first: np.ndarray  # (n_words,) first state of each word
    last: np.ndarray  # (n_words,) last state of each word
    starts: tuple[int, ...]  # states a path may start in
    ends: tuple[int, ...]  # states a path may end in
    senones: np.ndarray  # (S,) senone of each state


def _graph(model: SphinxModel, feats: np.ndarray, words: list[WordPhones], hop_s: float,
           band_s: float, pause_s: float, scale_to_hop: bool, expand: bool) -> _Graph:
    """The state graph (:class:`_Graph`). ``expand``: each HMM state becomes a chain of
    ``10 ms / hop_s`` states with its self-loop probability (the same minimum and expected
    time in it as at 10 ms); otherwise one state with its self-loop rescaled (the same
    expected time)."""
    n_frames = feats.shape[0]
    ratio = hop_s / TRAINED_HOP_S if scale_to_hop else 1.0
    r = max(round(TRAINED_HOP_S / hop_s), 1) if expand else 1
    per_phone = 3 * r
    ci = {p: i for i, p in enumerate(model.mdef.ciphones)}
    seq: list[tuple[int, int]] = []  # (phone id, word index or -1 for silence)
    for i, ids in enumerate(_word_triphones(model, words, pause_s)):
        seq.append((ci[SILENCE], -1))
        seq += [(pid, i) for pid in ids]
    seq.append((ci[SILENCE], -1))
    n_states = per_phone * len(seq)
    senones = np.concatenate([np.repeat(model.mdef.senones[pid], r) for pid, _ in seq])  # (S,)
    uniq, inverse = np.unique(senones, return_inverse=True)
    loglik = senone_loglik(model, feats, uniq)[:, inverse] * ratio  # (T, S)
    word_of = np.repeat([w for _, w in seq], per_phone)
    if np.isfinite(band_s):  # word i's states only near where the first alignment put it
        t_s = np.arange(n_frames) * hop_s
        for i, w in enumerate(words):
            outside = (t_s < w.start_s - band_s) | (t_s >= w.end_s + band_s)
            loglik[np.ix_(outside, word_of == i)] = -np.inf
    # incoming arcs: self, previous state, skip, the previous phone's exit, and (a word's
    # first state) the exit of the word before, past the optional silence
    src = np.zeros((n_states, 5), dtype=np.int64)
    log_p = np.full((n_states, 5), -np.inf)
    exit_lp = np.empty(len(seq))
    for q, (pid, _) in enumerate(seq):
        lt = model.log_tmat[model.mdef.tmat[pid]].copy()  # (3, 4)
        if ratio != 1.0 and r == 1:  # the same expected time in each state, in seconds
            stay = np.exp(np.diag(lt[:, :3]))
            stay_new = 1.0 - (1.0 - stay) * ratio
            for k in range(3):
                lt[k] += np.log1p(-stay_new[k]) - np.log1p(-stay[k])
                lt[k, k] = np.log(stay_new[k])
        exit_lp[q] = lt[2, 3]
        b = per_phone * q
        for k in range(3):
            for c in range(r):
                s = b + k * r + c
                src[s, 0], log_p[s, 0] = s, lt[k, k]
                if c >= 1:
                    src[s, 1], log_p[s, 1] = s - 1, np.log1p(-np.exp(lt[k, k]))
                    continue
                if k >= 1:
                    src[s, 1], log_p[s, 1] = b + k * r - 1, lt[k - 1, k]
                if k >= 2:
                    src[s, 2], log_p[s, 2] = b + (k - 1) * r - 1, lt[k - 2, k]
        if q >= 1:
            src[b, 3], log_p[b, 3] = b - 1, exit_lp[q - 1]
            if seq[q - 1][1] == -1 and q >= 2:
                src[b, 4], log_p[b, 4] = b - per_phone - 1, exit_lp[q - 2]
    first = np.array([np.flatnonzero(word_of == i)[0] for i in range(len(words))])
    last = np.array([np.flatnonzero(word_of == i)[-1] for i in range(len(words))])
    return _Graph(src, log_p, word_of, loglik, first, last, (0, per_phone),
                  (n_states - 1, n_states - 1 - per_phone), senones)


def _viterbi(g: _Graph) -> np.ndarray:
    """(T,) the best state sequence."""
    n_frames, n_states = g.loglik.shape
    delta = np.full(n_states, -np.inf)
    delta[list(g.starts)] = g.loglik[0, list(g.starts)]
    back = np.zeros((n_frames, n_states), dtype=np.int8)
    rows = np.arange(n_states)
    for t in range(1, n_frames):
        cand = delta[g.src] + g.log_p  # (S, K)
        best = np.argmax(cand, axis=1)
        back[t] = best
        delta = cand[rows, best] + g.loglik[t]
    state = max(g.ends, key=lambda s: delta[s])
    if not np.isfinite(delta[state]):
        raise AlignmentError("the state-level re-alignment found no path")
    path = np.empty(n_frames, dtype=np.int64)
    for t in range(n_frames - 1, -1, -1):
        path[t] = state
        state = g.src[state, back[t, state]]
    return path


def _boundary_posteriors(g: _Graph, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """(n_words, T + 1) posterior probability that word i starts / ends at boundary t
    (before frame t), by the forward-backward algorithm with frame scores times ``scale``."""
    loglik = g.loglik * scale
    n_frames, n_states = loglik.shape
    alpha = np.full((n_frames, n_states), -np.inf)
    alpha[0, list(g.starts)] = loglik[0, list(g.starts)]
    for t in range(1, n_frames):
        alpha[t] = logsumexp(alpha[t - 1][g.src] + g.log_p, axis=1) + loglik[t]
    # outgoing arcs, for the backward pass
    outs: list[list[tuple[int, float]]] = [[] for _ in range(n_states)]
    for s in range(n_states):
        for k in range(g.src.shape[1]):
            if np.isfinite(g.log_p[s, k]):
                outs[g.src[s, k]].append((s, g.log_p[s, k]))
    k_out = max(len(o) for o in outs)
    dst = np.zeros((n_states, k_out), dtype=np.int64)
    out_lp = np.full((n_states, k_out), -np.inf)
    for s, o in enumerate(outs):
        for k, (d, lp) in enumerate(o):
            dst[s, k], out_lp[s, k] = d, lp
    beta = np.full((n_frames, n_states), -np.inf)
    beta[-1, list(g.ends)] = 0.0
    for t in range(n_frames - 1, 0, -1):
        beta[t - 1] = logsumexp(out_lp + (loglik[t] + beta[t])[dst], axis=1)
    log_z = logsumexp(alpha[-1, list(g.ends)], axis=0)
    if not np.isfinite(log_z):
        raise AlignmentError("the state-level re-alignment found no path")
    n_words = g.first.size
    starts = np.zeros((n_words, n_frames + 1))
    ends = np.zeros((n_words, n_frames + 1))
    for i in range(n_words):
        b, e = g.first[i], g.last[i]
        for k in (3, 4):  # entries from outside the word
            if np.isfinite(g.log_p[b, k]):
                v = alpha[:-1, g.src[b, k]] + g.log_p[b, k] + loglik[1:, b] + beta[1:, b]
                starts[i, 1:n_frames] += np.exp(v - log_z)
        if b in g.starts:
            starts[i, 0] += np.exp(alpha[0, b] + beta[0, b] - log_z)
        for d, lp in outs[e]:
            if d != e and g.word_of[d] != i:
                v = alpha[:-1, e] + lp + loglik[1:, d] + beta[1:, d]
                ends[i, 1:n_frames] += np.exp(v - log_z)
        if e in g.ends:
            ends[i, n_frames] += np.exp(alpha[-1, e] - log_z)
    return starts, ends


def realign_words(model: SphinxModel, wave: np.ndarray, words: list[WordPhones],
                  hop_s: float = TRAINED_HOP_S, band_s: float = 0.1,
                  pause_s: float = 0.03, scale_to_hop: bool = True,
                  posterior_scale: float | None = None, adapt: int = 0,
                  expand: bool = False, remove_noise: bool = True
                  ) -> list[tuple[float, float]]:
    """(start_s, end_s) of every word on frames of ``hop_s`` (see the module docstring); a
    boundary before frame k is at ``k * hop_s``. From the best state sequence (Viterbi), or
    with ``posterior_scale`` the median of each boundary's posterior distribution with frame
    log-likelihoods times that scale (a flatter posterior below 1). ``scale_to_hop`` False:
    frame scores and transitions as at 10 ms, whatever the step. ``adapt``: that many rounds
    of MLLR mean adaptation (:func:`mllr_adapted`) from the best state sequence first.
    ``expand``: see :func:`_graph`."""
    feats = features(wave, hop_s, remove_noise)  # (T, 39)
    g = _graph(model, feats, words, hop_s, band_s, pause_s, scale_to_hop, expand)
    for _ in range(adapt):
        model = mllr_adapted(model, feats, g.senones[_viterbi(g)])
        g = _graph(model, feats, words, hop_s, band_s, pause_s, scale_to_hop, expand)
    if posterior_scale is None:
        path_words = g.word_of[_viterbi(g)]  # (T,)
        out = []
        for i in range(len(words)):
            idx = np.flatnonzero(path_words == i)
            out.append((idx[0] * hop_s, (idx[-1] + 1) * hop_s))
        return out
    starts, ends = _boundary_posteriors(g, posterior_scale)

    def median(p: np.ndarray) -> int:
        return int(np.searchsorted(np.cumsum(p), 0.5 * p.sum()))

    out, prev = [], 0.0
    for i in range(len(words)):
        s = max(median(starts[i]) * hop_s, prev)
        e = max(median(ends[i]) * hop_s, s + hop_s)
        out.append((s, e))
        prev = e
    return out


NON_SPEECH = ("SIL", "+NSN+", "+SPN+")  # codebooks of the non-speech regression class


def mllr_adapted(model: SphinxModel, feats: np.ndarray, frame_senones: np.ndarray,
                 min_frames: int = 300) -> SphinxModel:
    """The model with its Gaussian means moved by MLLR (Leggetter & Woodland 1995, "Maximum
    likelihood linear regression for speaker adaptation of continuous density hidden Markov
    models"; the row-by-row solution for diagonal covariances of Gales & Woodland 1996):
    one affine transform ``mu' = A mu + b`` per feature stream and regression class (speech;
    silence and noise), estimated from ``feats`` (T, 39) with each frame assigned to the
    senone ``frame_senones`` (T,) of a first alignment, the Gaussians of its codebook weighted
    by their posterior. A class seen in fewer than ``min_frames`` frames shares the global
    transform (all frames)."""
    n_cb, n_feat, n_dens, dim = model.means.shape
    occ = np.zeros((n_cb, n_feat, n_dens))  # Gaussian occupancies
    first = np.zeros((n_cb, n_feat, n_dens, dim))  # sum of posterior * x
    cbs = model.sen2cb[frame_senones]  # (T,)
    for cb in np.unique(cbs):
        rows = np.flatnonzero(cbs == cb)
        for f in range(n_feat):
            x = feats[rows, dim * f:dim * (f + 1)]  # (n, 13)
            m, iv = model.means[cb, f], model.inv_var[cb, f]  # (128, 13)
            quad = (x ** 2) @ iv.T - 2.0 * x @ (m * iv).T + (m ** 2 * iv).sum(axis=1)
            logp = model.log_norm[cb, f] - 0.5 * quad + model.log_mixw[f][:, frame_senones[
                rows]].T  # (n, 128)
            logp -= logp.max(axis=1, keepdims=True)
            post = np.exp(logp)
            post /= post.sum(axis=1, keepdims=True)
            occ[cb, f] += post.sum(axis=0)
            first[cb, f] += post.T @ x
    non_speech = np.isin(np.array(model.mdef.ciphones), NON_SPEECH)  # (n_cb,)
    frames_of = {True: np.isin(cbs, np.flatnonzero(non_speech)).sum()}
    frames_of[False] = cbs.size - frames_of[True]
    means = model.means.copy()
    for f in range(n_feat):
        transforms = {}
        for cls in (None, False, True):  # global, speech, non-speech
            sel = np.ones(n_cb, bool) if cls is None else non_speech == cls
            if cls is not None and frames_of[cls] < min_frames:
                transforms[cls] = transforms[None]
                continue
            mu = model.means[sel, f].reshape(-1, dim)  # (M, 13)
            iv = model.inv_var[sel, f].reshape(-1, dim)
            g_occ = occ[sel, f].reshape(-1)  # (M,)
            g_first = first[sel, f].reshape(-1, dim)
            xi = np.concatenate([np.ones((mu.shape[0], 1)), mu], axis=1)  # (M, 14)
            w = np.zeros((dim, dim + 1))
            for i in range(dim):
                gram = (xi * (g_occ * iv[:, i])[:, None]).T @ xi  # (14, 14)
                k = xi.T @ (g_first[:, i] * iv[:, i])  # (14,)
                w[i] = np.linalg.solve(gram + 1e-6 * np.eye(dim + 1), k)
            transforms[cls] = w
        for cb in range(n_cb):
            w = transforms[bool(non_speech[cb])]
            means[cb, f] = model.means[cb, f] @ w[:, 1:].T + w[:, 0]
    return SphinxModel(model.mdef, means, model.inv_var, model.log_norm, model.log_mixw,
                       model.log_tmat, model.sen2cb)
