"""Stage I of COVAREP-74: a creaky-voice posterior on the 10 ms grid (docs/covarep74.md §11).

COVAREP's creak column is the output of a trained network (Kane, Drugman & Gobl 2013,
"Improved automatic detection of creak", Computer Speech & Language; Drugman, Kane & Gobl 2014,
"Data-driven detection and analysis of the patterns of creaky voice") whose weights cannot be
copied. This module is the substitute of §11.4 (c): our own features, after the rule-based
detector of Ishi, Sakakibara, Ishiguro & Hagita 2008 ("A method for automatic detection of
vocal fry", IEEE TASLP) — very-short-term power peaks with a steep rise and fall (PwP),
inter-pulse similarity (IPS) and intra-frame periodicity (IFP) — plus Kane et al.'s H2-H1 of the
resonated residual, residual peak prominence, local (creak) f0, normalised energy and
zero-crossing rate, and SRH voicing, combined by a logistic model. Its coefficients were
fitted by ``benchmarks/covarep_creak_fit.py`` (logistic regression on a training subset of
``covarep-ref``, i.e. a calibration on the original COVAREP's outputs, never its weights; the
other files are the validation set that script reports).

Detector frames sit at sample numbers 160 j, j = 1..floor(L/160); output row k (1 <= k < N)
is the mean of detector frames k and k+1, row 0 and rows >= N are 0 (§11.2).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import butter, buttord, sosfiltfilt

from cmbert_pipe.errors import FeatureError

HOP = 160  # samples between detector frames (10 ms at 16 kHz)
VSP_LEN, VSP_HOP = 64, 32  # very-short-term power: 4 ms frames, 2 ms hop (Ishi 2008)
PEAK_PROMINENCE_DB = 2.0  # a power peak stands 2 dB above its +-3 frame neighbourhood
PEAK_RANGE_DB = 30.0  # and lies within 30 dB of the loudest one
RISE_FALL_SPAN = 5  # frames searched for the rise before / fall after a peak
PEAK_HOLD_S = 0.035  # a sample takes the values of the next peak if it is this close
IPS_SEG_S = 0.015  # inter-pulse similarity segment length
IPS_MAX_GAP_S = 0.100  # consecutive peaks further apart than this have IPS 0
IFP_LEN, IFP_MAX_LAG_S, IFP_MIN_LAG_S = 512, 0.015, 0.001  # 32 ms frames, lags 1..15 ms
ENERGY_LEN, ENERGY_HOP = 512, 80  # 32 ms Hann frames, 5 ms hop
H2H1_LEN, H2H1_NFFT = 800, 4096  # 50 ms Hann frames of the resonated residual, DFT size
RESONATOR_R_SPEC, RESONATOR_R_F0 = 0.97, 0.8  # pole radii of the F0mean resonator (Kane 2013)
DET_CHUNK = 2048  # detector frames per vectorised block (bounded memory on long recordings)
RPP_LEN = 456  # residual-peak-prominence window: 2 fs / 70 Hz (two creaky periods)
RPP_EXCLUDE = 0.2  # secondary peaks are searched outside +-20 % of the window around the main one

# Logistic model over FEATURE_NAMES (standardised with FEATURE_MEAN / FEATURE_STD); fitted by
# benchmarks/covarep_creak_fit.py, see the module docstring.
FEATURE_NAMES = ("rise_db", "fall_db", "ips", "ifp", "energy_db", "zcr_per_ms", "pwp_min_db", "ips_x_pwp",
                 "res_peak_prominence", "srh_vuv", "delta_energy_db", "h2_h1_db", "creak_f0_hz")
FEATURE_MEAN = np.array([5.02370950e00, 4.89367110e00, 4.63883398e-01, 2.68699792e-01, -2.75575400e01,
                         2.29135253e00, 3.97856718e00, 2.72072785e00, 2.01468280e-01, 4.90203611e-01,
                         -1.74314255e-02, -2.21226907e01, 1.53436535e02])
FEATURE_STD = np.array([5.0902719, 4.65312168, 0.35545078, 0.33781748, 18.56807975, 2.16967723, 3.8266275,
                        3.12135992, 0.17793293, 0.49990402, 4.18917892, 17.10028322, 90.67523361])
WEIGHTS = np.array([-0.72842014, 0.33995137, 0.413967, -0.40747509, 0.72812947, -0.99260517, 0.31432003,
                    0.7467166, 0.53864149, -0.97318416, 0.04650386, 0.99522928, -0.03308747])
BIAS = -5.260896533140734


def _bandpass(x: np.ndarray, fs: float) -> np.ndarray:
    """Zero-phase Butterworth band-pass 100–1500 Hz (order from Wp/Ws/Rp 3/Rs 40, §11.3.4)."""
    order, wn = buttord([100, 1500], [50, 3000], 3, 40, fs=fs)
    sos = butter(order, wn, btype="bandpass", output="sos", fs=fs)
    return sosfiltfilt(sos, x)


def _power_db(bp: np.ndarray) -> np.ndarray:
    """Very-short-term power (dB) of 64-sample frames hopped by 32, frame i at samples 32 i..."""
    n_blocks = bp.size // VSP_HOP
    block = np.sum(bp[: n_blocks * VSP_HOP].reshape(n_blocks, VSP_HOP) ** 2, axis=1)
    return 10 * np.log10((block[:-1] + block[1:]) / VSP_LEN + 1e-12)


def level_maxima(x: np.ndarray, fs: float, lo: int, hi: int) -> tuple[float, float]:
    """(max very-short-term power dB, max frame energy dB) over the frames of ``x`` that start
    (power) or sit (energy) at samples lo..hi-1: the file-wide levels that segmented extraction
    passes to :func:`creak_features` (the maximum over segments' cores is the file's)."""
    x = np.asarray(x, dtype=float)
    p_db = _power_db(_bandpass(x, fs))
    starts = VSP_HOP * np.arange(p_db.size)
    sel = p_db[(starts >= lo) & (starts < hi)]
    n_det = x.size // HOP
    e_db, _ = _by_chunks(_energy_zcr_chunk, n_det, np.pad(x, ENERGY_LEN // 2), fs)
    det = HOP * np.arange(1, n_det + 1) - 1
    e_sel = e_db[(det >= lo) & (det < hi)]
    return (float(sel.max()) if sel.size else -np.inf, float(e_sel.max()) if e_sel.size else -np.inf)


def _power_peaks(bp: np.ndarray, fs: float, p_max_db: float | None = None):
    """Very-short-term power peaks: (centre sample indices, rise dB, fall dB, power dB);
    "loud" is within PEAK_RANGE_DB of ``p_max_db`` (default: this signal's loudest frame)."""
    p_db = _power_db(bp)
    n = p_db.size
    pad = np.pad(p_db, 3, mode="edge")
    neigh = sliding_window_view(pad, 7)  # (F, 7) +-3 frames
    is_max = p_db >= neigh.max(axis=1)
    prominent = p_db - neigh.min(axis=1) >= PEAK_PROMINENCE_DB
    loud = p_db >= (p_db.max() if p_max_db is None else p_max_db) - PEAK_RANGE_DB
    idx = np.flatnonzero(is_max & prominent & loud)
    idx = idx[(idx > 0) & (idx < n - 1)]
    padr = np.pad(p_db, RISE_FALL_SPAN, mode="edge")
    win = sliding_window_view(padr, 2 * RISE_FALL_SPAN + 1)[idx]  # (P, 11), centre at 5
    rise = p_db[idx] - win[:, :RISE_FALL_SPAN].min(axis=1)
    fall = p_db[idx] - win[:, RISE_FALL_SPAN + 1 :].min(axis=1)
    centres = idx * VSP_HOP + VSP_LEN // 2
    return centres, rise, fall, p_db[idx]


def _inter_pulse_similarity(bp: np.ndarray, centres: np.ndarray, fs: float) -> np.ndarray:
    """Max normalised cross-correlation of 15 ms segments around consecutive peaks (per peak,
    with its predecessor); 0 for the first peak and for gaps over 100 ms."""
    ips = np.zeros(centres.size)
    half = round(IPS_SEG_S * fs / 2)
    gap = round(IPS_MAX_GAP_S * fs)
    padded = np.pad(bp, half)
    nfft = 4 * half
    for lo in range(1, centres.size, DET_CHUNK):  # peak i is compared with peak i-1
        sel = np.arange(lo - 1, min(lo + DET_CHUNK, centres.size))
        segs = sliding_window_view(padded, 2 * half)[centres[sel]]  # (n, 2 half)
        norms = np.sqrt(np.sum(segs**2, axis=1)) + 1e-12
        spec = np.fft.rfft(segs, n=nfft, axis=1)
        close = np.flatnonzero(np.diff(centres[sel]) <= gap) + 1  # rows with a near predecessor
        if close.size:
            xc = np.fft.irfft(spec[close] * np.conj(spec[close - 1]), n=nfft, axis=1)
            ips[sel[close]] = xc.max(axis=1) / (norms[close] * norms[close - 1])
    return ips


def _by_chunks(fn, n_det: int, *args):
    """Apply fn(centres, *args) -> (n,) or tuple of (n,) to detector centres in chunks."""
    centres = HOP * np.arange(1, n_det + 1) - 1
    parts = [fn(centres[lo : lo + DET_CHUNK], *args) for lo in range(0, n_det, DET_CHUNK)]
    if isinstance(parts[0], tuple):
        return tuple(np.concatenate(p) for p in zip(*parts, strict=True))
    return np.concatenate(parts)


def _intraframe_periodicity(bp: np.ndarray, fs: float, n_det: int) -> np.ndarray:
    return _by_chunks(_ifp_chunk, n_det, np.pad(bp, IFP_LEN // 2), fs)


def _ifp_chunk(centres: np.ndarray, padded: np.ndarray, fs: float) -> np.ndarray:
    """IFP per detector frame: the smallest normalised-autocorrelation value at multiples of
    the strongest lag in 1..15 ms, over a 32 ms frame centred on the detector sample."""
    n_det = centres.size
    frames = sliding_window_view(padded, IFP_LEN)[centres]  # (n, 512) centred on the samples
    spec = np.fft.rfft(frames, n=2 * IFP_LEN, axis=1)
    ac = np.fft.irfft(np.abs(spec) ** 2, axis=1)[:, : int(IFP_MAX_LAG_S * fs) + 1]
    ac = ac / (ac[:, :1] + 1e-12)
    min_lag = int(IFP_MIN_LAG_S * fs)
    ac[:, :min_lag] = -np.inf
    first = np.argmax(ac, axis=1)  # (n,)
    max_lag = ac.shape[1] - 1
    ifp = ac[np.arange(n_det), first].copy()
    for mult in range(2, max_lag // min_lag + 1):
        lag = first * mult
        ok = lag <= max_lag
        vals = np.where(ok, ac[np.arange(n_det), np.minimum(lag, max_lag)], np.inf)
        ifp = np.minimum(ifp, vals)
    return np.clip(ifp, -1.0, 1.0)


def _energy_zcr(x: np.ndarray, fs: float, n_det: int, e_max_db: float | None = None):
    """Normalised log energy (dB re the maximum, or ``e_max_db``) and zero-crossing rate (per
    ms) per frame."""
    e_db, zcr = _by_chunks(_energy_zcr_chunk, n_det, np.pad(x, ENERGY_LEN // 2), fs)
    return e_db - (e_db.max() if e_max_db is None else e_max_db), zcr


def _energy_zcr_chunk(centres: np.ndarray, padded: np.ndarray, fs: float):
    frames = sliding_window_view(padded, ENERGY_LEN)[centres]
    w = np.hanning(ENERGY_LEN)
    e_db = 10 * np.log10(np.sum((frames * w) ** 2, axis=1) + 1e-12)
    signs = np.signbit(frames)
    zcr = np.sum(signs[:, 1:] != signs[:, :-1], axis=1) / (ENERGY_LEN / fs * 1000)
    return e_db, zcr


def _residual_peak_prominence(res: np.ndarray, n_det: int) -> np.ndarray:
    """1 - (largest |residual| peak outside +-20 % of the window around the main peak) / main
    peak, per detector frame (after Kane, Drugman & Gobl 2013): near 1 for isolated pulses."""
    padded = np.pad(np.abs(np.nan_to_num(res)), RPP_LEN // 2)
    return _by_chunks(_rpp_chunk, n_det, padded)


def _rpp_chunk(centres: np.ndarray, padded: np.ndarray) -> np.ndarray:
    frames = sliding_window_view(padded, RPP_LEN)[centres]  # (n, 456)
    rows = np.arange(centres.size)
    main = np.argmax(frames, axis=1)
    peak = frames[rows, main]
    excl = int(RPP_EXCLUDE * RPP_LEN)
    pos = np.arange(RPP_LEN)[None, :]
    rest = np.where(np.abs(pos - main[:, None]) > excl, frames, 0.0).max(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(peak > 0, 1.0 - rest / peak, 0.0)


def _h2_h1(res: np.ndarray, fs: float, n_det: int, f0_mean: float):
    """H2-H1 (dB) and the local f0 (Hz) of the residual filtered by a resonator at F0mean,
    per detector frame (after Kane, Drugman & Gobl 2013): the local f0 is the strongest
    autocorrelation lag after the initial positive lobe of the rho=0.8 resonator output; the
    harmonic levels come from the spectrum of the autocorrelation of the rho=0.97 output."""
    from scipy.signal import lfilter

    res = np.nan_to_num(res)
    w0 = 2 * np.pi * f0_mean / fs
    spec_in = lfilter([1.0], [1, -2 * RESONATOR_R_SPEC * np.cos(w0), RESONATOR_R_SPEC**2], res)
    f0_in = lfilter([1.0], [1, -2 * RESONATOR_R_F0 * np.cos(w0), RESONATOR_R_F0**2], res)
    half = H2H1_LEN // 2
    centres = HOP * np.arange(1, n_det + 1) - 1
    win = np.hanning(H2H1_LEN)
    h2h1 = np.zeros(n_det)
    f0_loc = np.zeros(n_det)
    max_lag = min(H2H1_LEN - 1, int(fs / 20))
    for lo in range(0, n_det, 256):
        c = centres[lo : lo + 256]
        fr_f0 = sliding_window_view(np.pad(f0_in, half), H2H1_LEN)[c] * win
        fr_sp = sliding_window_view(np.pad(spec_in, half), H2H1_LEN)[c] * win
        ac = np.fft.irfft(np.abs(np.fft.rfft(fr_f0, n=2 * H2H1_LEN, axis=1)) ** 2, axis=1)[:, : max_lag + 1]
        neg = ac <= 0
        first_neg = np.where(neg.any(axis=1), np.argmax(neg, axis=1), max_lag)
        lags = np.arange(max_lag + 1)[None, :]
        masked = np.where((lags >= np.maximum(first_neg, 5)[:, None]), ac, -np.inf)
        lag = np.argmax(masked, axis=1)
        f0 = np.where(np.isfinite(masked.max(axis=1)) & (lag > 0), fs / np.maximum(lag, 1), 0.0)
        ac_sp = np.fft.irfft(np.abs(np.fft.rfft(fr_sp, n=2 * H2H1_LEN, axis=1)) ** 2, axis=1)
        ac_sp = np.concatenate((ac_sp[:, -(H2H1_LEN - 1) :], ac_sp[:, :H2H1_LEN]), axis=1)
        mag = np.abs(np.fft.rfft(ac_sp, n=H2H1_NFFT, axis=1))
        norm = np.sqrt(np.sum(mag**2, axis=1)) + 1e-300
        b1 = np.clip(np.round(f0 * H2H1_NFFT / fs).astype(int), 0, mag.shape[1] - 1)
        b2 = np.clip(np.round(2 * f0 * H2H1_NFFT / fs).astype(int), 0, mag.shape[1] - 1)
        rows = np.arange(c.size)

        def db(b, mag=mag, norm=norm, rows=rows):  # level of bin b[r] of row r (only 2 are read)
            return 20 * np.log10(mag[rows, b] / norm + 1e-12)

        h2h1[lo : lo + 256] = np.where(f0 > 0, db(b2) - db(b1), 0.0)
        f0_loc[lo : lo + 256] = f0
    return h2h1, f0_loc


def _vuv_at_detector(srh_vuv, n_det: int) -> np.ndarray:
    """SRH voicing (frames at sample numbers 800 + 160 j) interpolated at samples 160 j."""
    if srh_vuv is None:
        return np.zeros(n_det)
    v = np.asarray(srh_vuv, dtype=float).ravel()
    return np.interp(HOP * np.arange(1, n_det + 1), 800 + HOP * np.arange(v.size), v, left=0.0, right=0.0)


def creak_features(x: np.ndarray, fs: float, res18=None, srh_vuv=None, srh_f0=None,
                   levels: tuple[float, float, float] | None = None) -> np.ndarray:
    """(N, 13) detector-frame features (FEATURE_NAMES) at sample numbers 160 j, j = 1..N.

    res18: the LP residual of x (computed here when None); srh_vuv, srh_f0: SRH voicing and f0
    per 10 ms frame (voicing zeros and F0mean = 100 Hz when None). ``levels`` (F0mean, max
    power dB, max energy dB) replaces what this signal gives (segmented extraction passes the
    whole file's, :func:`level_maxima`)."""
    x = np.asarray(x, dtype=float)
    n_det = x.size // HOP
    if n_det < 2:
        raise FeatureError(f"creak: signal of {x.size} samples is shorter than two 10 ms frames")
    if not np.all(np.isfinite(x)):
        raise FeatureError("creak: signal has NaN or infinite samples")
    bp = _bandpass(x, fs)
    centres, rise, fall, _ = _power_peaks(bp, fs, None if levels is None else levels[1])
    ips = _inter_pulse_similarity(bp, centres, fs)
    det = HOP * np.arange(1, n_det + 1) - 1  # 0-based detector samples
    nxt = np.searchsorted(centres, det, side="left")
    has = nxt < centres.size
    nxt_c = np.minimum(nxt, max(centres.size - 1, 0))
    if centres.size:
        near = has & ((centres[nxt_c] - det) < PEAK_HOLD_S * fs)
        r, f, s = (np.where(near, v[nxt_c], 0.0) for v in (rise, fall, ips))
    else:
        r = f = s = np.zeros(n_det)
    ifp = _intraframe_periodicity(bp, fs, n_det)
    e_db, zcr = _energy_zcr(x, fs, n_det, None if levels is None else levels[2])
    pwp = np.minimum(r, f)
    if res18 is None:
        from cmbert_pipe.acoustic.covarep.lpres import lpc_residual

        res18 = lpc_residual(x, 400, 80, 18)
    rpp = _residual_peak_prominence(np.asarray(res18, dtype=float), n_det)
    vuv = _vuv_at_detector(srh_vuv, n_det)
    d_e = np.diff(e_db, prepend=e_db[0])
    f0_mean = 100.0
    if srh_f0 is not None and srh_vuv is not None:
        f0v = np.asarray(srh_f0, dtype=float).ravel()[np.asarray(srh_vuv).ravel() > 0]
        if f0v.size:
            f0_mean = float(np.median(f0v))
    if levels is not None:
        f0_mean = levels[0]
    h2h1, f0_loc = _h2_h1(np.asarray(res18, dtype=float), fs, n_det, f0_mean)
    return np.column_stack([r, f, s, ifp, e_db, zcr, pwp, s * pwp, rpp, vuv, d_e, h2h1, f0_loc])


def creak_probability(features: np.ndarray) -> np.ndarray:
    """Logistic posterior (N,) from :func:`creak_features` rows."""
    z = (features - FEATURE_MEAN) / FEATURE_STD
    return 1.0 / (1.0 + np.exp(-(z @ WEIGHTS + BIAS)))


def detector_to_grid(p: np.ndarray, n_samples: int) -> np.ndarray:
    """Detector frames (at samples 160 j) -> the 10 ms output grid (§11.2), (K,)."""
    k_rows = (n_samples - 80) // 160 + 1
    out = np.zeros(k_rows)
    n = p.size
    k = np.arange(1, min(n, k_rows))
    out[k] = 0.5 * (p[k - 1] + p[k])
    return out


def creak_posterior(x, fs, res18=None, srh_f0=None, srh_vuv=None, levels=None) -> np.ndarray:
    """Creak column on the 10 ms grid, (K,) in [0, 1]. ``res18`` is the LP residual of x
    (recomputed when None), ``srh_f0``/``srh_vuv`` the SRH pitch and voicing (F0mean for the
    resonator; 100 Hz and unvoiced when None).
    Raises FeatureError when the signal cannot be analysed (the caller writes zeros)."""
    x = np.asarray(x, dtype=float)
    return detector_to_grid(creak_probability(creak_features(x, fs, res18, srh_vuv, srh_f0, levels)),
                            x.size)
