"""Word boundaries from an HTK monophone acoustic model: our own reader of HTK model files,
our own HTK-compatible PLP front end, and a Viterbi forced alignment over the transcript.

The model is the Penn Phonetics Lab Forced Aligner's (P2FA; Yuan & Liberman 2008, "Speaker
identification on the SCOTUS corpus", Proc. Acoustics '08): 3-state left-to-right monophone
HMMs with 32 diagonal Gaussians per state, stress-marked ARPAbet vowels, a 3-emitting-state
``sil`` with skip and return transitions, and a one-state tee model ``sp`` for optional pauses
between words. Its 16 kHz version ships inside the ``fave`` wheel (FAVE-align, GPL-3.0),
installed with ``pip install --no-deps fave`` (its metadata pins numpy < 2, which this project
does not need: only the model's text files are read, nothing of fave is imported). This module
reads those files where pip put them; nothing is downloaded or copied.

Model files (HTK Book 3.4, ch. 7 "HMM definition files"): ``hmmdefs`` is a text master macro
file of ``~o`` (global options), ``~v`` (variance floor), ``~s`` (shared states), ``~h``
(HMMs: ``<NUMSTATES>``, per emitting ``<STATE>`` a ``<NUMMIXES>``/``<MIXTURE>`` list of
``<MEAN>``/``<VARIANCE>`` vectors or a ``~s`` reference, and a ``<TRANSP>`` matrix whose first
and last states are non-emitting). ``config`` gives the front end: ``PLP_0_D_A_Z``, 25 ms
Hamming windows every 10 ms, per-frame mean removal, pre-emphasis 0.97, 20 mel channels of the
power spectrum, LPC order 12.

Front end (HTK Book 3.4, sec. 5.6 "Perceptual linear prediction"; Hermansky 1990, "Perceptual
linear predictive (PLP) analysis of speech", JASA 87): the mel filterbank (triangles on the
mel scale ``1127 ln(1 + f/700)`` between 0 Hz and Nyquist, each FFT bin split between its two
neighbouring channels), equal-loudness weighting of each channel at its centre frequency,
cube-root intensity-loudness compression (0.33), the edge channels repeated, an inverse DFT to
12 + 1 autocorrelations, Levinson-Durbin, LPC -> cepstrum recursion, sinusoidal lifter 22;
C0 is the log prediction-error power. Deltas and accelerations by HTK's regression over +-2
frames (edges repeated); ``_Z``: the utterance mean of the static coefficients removed.

Alignment (HVite-style forced alignment, Young et al., "The HTK Book"): the words in order,
each with its dictionary pronunciations in parallel, an ``sp`` tee model after every word but
the last and optional ``sil`` at both ends; Viterbi over the emitting states with the model's
transition probabilities, non-emitting states folded into the arcs. A label starting at frame
``t`` (window ``[10 t, 10 t + 25]`` ms) is placed at ``10 t + offset`` ms (0: the frame's
start, as MFA writes times; P2FA itself adds 12.5 ms, the frame's centre).

Not part of the default alignment: ``benchmarks/align_accuracy.py`` measures it as an idea
(68.9 % of the word boundaries within 20 ms of MFA's references, 70.2 % after one round of
MLLR to the recording, 68.0 % leave-one-out, against PocketSphinx's 68.6 %).
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import logsumexp

from cmbert_pipe.errors import AlignmentError

SAMPLE_RATE_HZ = 16_000
HOP = 160  # samples: 10 ms
WINDOW = 400  # samples: 25 ms
N_FFT = 512
N_CHANS, LPC_ORDER, LIFTER, COMPRESS = 20, 12, 22, 0.33
PRE_EMPHASIS = 0.97
MEL_FLOOR = 1.0  # HTK floors each channel at 1 (16-bit sample units) before the loudness curve
DELTA_WINDOW = 2
LOG_ZERO = -1e30


def model_dir() -> Path:
    """The P2FA 16 kHz model inside the installed ``fave`` package."""
    spec = importlib.util.find_spec("fave")
    if spec is None or not spec.submodule_search_locations:
        raise AlignmentError("the HTK (P2FA) acoustic model is not installed: "
                             "pip install --no-deps fave")
    root = Path(next(iter(spec.submodule_search_locations))) / "align" / "model"
    if not (root / "16000" / "hmmdefs").is_file():
        raise AlignmentError(f"{root}/16000/hmmdefs: missing from the installed fave package")
    return root


# --------------------------------------------------------------------------- model files


@dataclass
class Gmm:
    log_w: np.ndarray  # (M,)
    mean: np.ndarray  # (M, D)
    var: np.ndarray  # (M, D)


@dataclass
class Hmm:
    states: list[str]  # GMM key of each emitting state (2 .. N-1)
    log_trans: np.ndarray  # (N, N) over all states, non-emitting 0 and N-1 included


@dataclass
class HtkModel:
    gmms: dict[str, Gmm]
    hmms: dict[str, Hmm]


def _tokens(text: str) -> list[str]:
    return re.findall(r'"[^"]*"|<[^>]+>|~\w|[^\s<>"~]+', text)


def read_hmmdefs(path: Path) -> HtkModel:
    toks = _tokens(path.read_text())
    gmms: dict[str, Gmm] = {}
    hmms: dict[str, Hmm] = {}
    i = 0

    def expect(tag: str) -> None:
        if i >= len(toks) or toks[i].upper() != tag:
            found = toks[i] if i < len(toks) else "the end of the file"
            raise AlignmentError(f"{path}: expected {tag}, found {found!r}")

    def floats(n: int) -> np.ndarray:
        nonlocal i
        out = np.asarray(toks[i:i + n], dtype=np.float64)
        i += n
        return out

    def state() -> Gmm:
        nonlocal i
        n_mix = 1
        if toks[i].upper() == "<NUMMIXES>":
            n_mix = int(toks[i + 1])
            i += 2
        ws, means, vars_ = [], [], []
        for _ in range(n_mix):
            w = 1.0
            if toks[i].upper() == "<MIXTURE>":
                w = float(toks[i + 2])
                i += 3
            for tag, dest in (("<MEAN>", means), ("<VARIANCE>", vars_)):
                expect(tag)
                dim = int(toks[i + 1])
                i += 2
                dest.append(floats(dim))
            if toks[i].upper() == "<GCONST>":
                i += 2
            ws.append(w)
        w = np.asarray(ws)
        keep = w > 0
        return Gmm(np.log(w[keep]), np.stack(means)[keep], np.stack(vars_)[keep])

    while i < len(toks):
        t = toks[i]
        if t == "~s":
            name = toks[i + 1].strip('"')
            i += 2
            gmms[name] = state()
        elif t == "~h":
            name = toks[i + 1].strip('"')
            i += 2
            expect("<BEGINHMM>")
            i += 1
            expect("<NUMSTATES>")
            n = int(toks[i + 1])
            i += 2
            keys: list[str] = []
            while toks[i].upper() == "<STATE>":
                k = int(toks[i + 1])
                i += 2
                if toks[i] == "~s":
                    keys.append(toks[i + 1].strip('"'))
                    i += 2
                else:
                    key = f"{name}[{k}]"
                    gmms[key] = state()
                    keys.append(key)
            expect("<TRANSP>")
            m = int(toks[i + 1])
            i += 2
            with np.errstate(divide="ignore"):
                trans = np.log(floats(m * m).reshape(m, m))
            expect("<ENDHMM>")
            i += 1
            if not len(keys) == n - 2 == m - 2:
                raise AlignmentError(f"{path}: HMM {name!r} has {n} states, {len(keys)} "
                                     f"emitting and a {m} x {m} transition matrix")
            hmms[name] = Hmm(keys, trans)
        else:
            i += 1  # ~o (global options) and ~v (variance floor): not needed to score
    return HtkModel(gmms, hmms)


#: What our front end computes, as HTK's config names it (``model_dir()/16000/config``).
FRONT_END = {"SOURCERATE": 625.0, "TARGETKIND": "PLP_0_D_A_Z", "TARGETRATE": 100000.0,
             "WINDOWSIZE": 250000.0, "ZMEANSOURCE": "T", "USEHAMMING": "T",
             "PREEMCOEF": PRE_EMPHASIS, "NUMCHANS": N_CHANS, "LPCORDER": LPC_ORDER,
             "USEPOWER": "T"}


def check_config(path: Path) -> None:
    """Refuse a model whose HTK config asks for another front end than ours."""
    found: dict[str, str] = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.split("#", 1)[0].partition("=")
        if sep:
            found[key.strip().upper()] = value.strip()
    for key, want in FRONT_END.items():
        got = found.get(key)
        same = got is not None and (float(got) == want if isinstance(want, float | int)
                                    else got.upper() == want)
        if not same:
            raise AlignmentError(f"{path}: {key} = {got}, but our front end computes {want}")


@functools.lru_cache(maxsize=1)
def load_model() -> HtkModel:
    check_config(model_dir() / "16000" / "config")
    return read_hmmdefs(model_dir() / "16000" / "hmmdefs")


@functools.lru_cache(maxsize=1)
def load_dictionary() -> dict[str, tuple[tuple[str, ...], ...]]:
    prons: dict[str, list[tuple[str, ...]]] = {}
    for line in (model_dir() / "dict").read_text(errors="replace").splitlines():
        parts = line.split()
        if len(parts) < 2 or parts[0].startswith("!"):
            continue
        word = parts[0].lower()
        pron = tuple(parts[1:])
        prons.setdefault(word, [])
        if pron not in prons[word]:
            prons[word].append(pron)
    return {w: tuple(p) for w, p in prons.items()}


def pronunciations(word: str, fallback: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    """The model dictionary's pronunciations of ``word``; else ``fallback`` (unstressed CMU
    ARPAbet, e.g. the first alignment's choice) with primary stress on every vowel, and
    anything the model has no HMM for (noise phones) as silence."""
    found = load_dictionary().get(word.lower())
    if found:
        return found
    hmms = load_model().hmms
    out = []
    for ph in fallback:
        ph = ph.upper()
        out.append(ph if ph in hmms else f"{ph}1" if f"{ph}1" in hmms else "sil")
    return (tuple(out),) if out else (("sil",),)


# --------------------------------------------------------------------------- front end


def _mel(f: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log1p(np.asarray(f) / 700.0)


@functools.lru_cache(maxsize=1)
def _plp_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(filterbank weights (bins, chans), equal-loudness (chans,), IDFT (order+1, chans+2),
    lifter (order,))."""
    n_bins = N_FFT // 2
    fres = SAMPLE_RATE_HZ / N_FFT
    mhi = _mel(SAMPLE_RATE_HZ / 2)
    centres = np.arange(N_CHANS + 2) * mhi / (N_CHANS + 1)  # mel: 0, c_1 .. c_20, mhi
    fb = np.zeros((n_bins + 1, N_CHANS))
    for k in range(1, n_bins + 1):  # bin 0 (DC) is not used
        m = float(_mel(k * fres))
        ch = int(np.searchsorted(centres, m, side="left"))  # centres[ch - 1] < m <= centres[ch]
        ch = min(max(ch, 1), N_CHANS + 1)
        w_lo = (centres[ch] - m) / (centres[ch] - centres[ch - 1])  # weight of channel ch - 1
        if ch - 1 >= 1:
            fb[k, ch - 2] += w_lo
        if ch <= N_CHANS:
            fb[k, ch - 1] += 1.0 - w_lo
    f_c = 700.0 * np.expm1(centres[1:-1] / 1127.0)
    fsq = f_c ** 2
    fsub = fsq / (fsq + 1.6e5)
    eql = fsub * fsub * (fsq + 1.44e6) / (fsq + 9.61e6)
    # Autocorrelation of the power spectrum given at N_CHANS + 2 equally spaced points from 0 to
    # pi (its even extension's inverse DFT): edge points once, the others twice.
    j = np.arange(N_CHANS + 2)
    w = np.where((j == 0) | (j == N_CHANS + 1), 1.0, 2.0)
    idft = w[None, :] * np.cos(np.pi * np.arange(LPC_ORDER + 1)[:, None] * j[None, :]
                               / (N_CHANS + 1))
    n = np.arange(1, LPC_ORDER + 1)
    lifter = 1.0 + LIFTER / 2.0 * np.sin(np.pi * n / LIFTER)
    return fb, eql, idft, lifter


def _frames(wave: np.ndarray) -> np.ndarray:
    n = 1 + (len(wave) - WINDOW) // HOP
    if n < 1:
        return np.zeros((0, WINDOW))
    idx = np.arange(WINDOW)[None, :] + HOP * np.arange(n)[:, None]
    return wave[idx]


def _lpc_cepstra(r: np.ndarray) -> np.ndarray:
    """(T, p+1) autocorrelations -> (T, p + 1) [c_1 .. c_p, log prediction error].

    Levinson-Durbin over all frames at once (predictor ``x_n ~ sum_k a_k x_{n-k}``), then the
    cepstrum of the all-pole model ``1 / (1 - sum_k a_k z^-k)``:
    ``c_m = a_m + sum_{k<m} (k / m) c_k a_{m-k}`` (Markel & Gray 1976)."""
    T, p1 = r.shape
    p = p1 - 1
    r = r.copy()
    r[:, 0] = np.maximum(r[:, 0], 1e-30)
    a = np.zeros((T, p + 1))  # a[:, 1..i]
    err = r[:, 0].copy()
    for i in range(1, p + 1):
        acc = r[:, i] - np.einsum("tj,tj->t", a[:, 1:i], r[:, i - 1:0:-1]) if i > 1 else r[:, 1]
        k = acc / err
        prev = a[:, 1:i].copy()
        a[:, i] = k
        a[:, 1:i] = prev - k[:, None] * prev[:, ::-1]
        err = np.maximum(err * (1.0 - k * k), 1e-30)
    c = np.zeros((T, p + 1))
    for m in range(1, p + 1):
        c[:, m] = a[:, m] + sum((k / m) * c[:, k] * a[:, m - k] for k in range(1, m))
    out = np.empty((T, p + 1))
    out[:, :p] = c[:, 1:]
    out[:, p] = np.log(err)
    return out


def _deltas(x: np.ndarray, window: int = DELTA_WINDOW) -> np.ndarray:
    T = len(x)
    pad = np.concatenate([np.repeat(x[:1], window, 0), x, np.repeat(x[-1:], window, 0)])
    num = sum(th * (pad[window + th:window + th + T] - pad[window - th:window - th + T])
              for th in range(1, window + 1))
    return num / (2.0 * sum(th * th for th in range(1, window + 1)))


def plp_features(wave: np.ndarray) -> np.ndarray:
    """(N,) 16 kHz mono audio in [-1, 1] -> (T, 39) PLP_0_D_A_Z features, frame t at 10 t ms."""
    fb, eql, idft, lifter = _plp_tables()
    frames = _frames(np.asarray(wave, dtype=np.float64) * 32768.0)
    if len(frames) == 0:
        return np.zeros((0, 39))
    frames = frames - frames.mean(axis=1, keepdims=True)
    pre = frames.copy()
    pre[:, 1:] -= PRE_EMPHASIS * frames[:, :-1]
    pre[:, 0] *= 1.0 - PRE_EMPHASIS
    ham = 0.54 - 0.46 * np.cos(2 * np.pi * np.arange(WINDOW) / (WINDOW - 1))
    power = np.abs(np.fft.rfft(pre * ham, N_FFT)) ** 2  # (T, 257)
    fbank = power @ fb  # (T, 20)
    aspec = (np.maximum(fbank, MEL_FLOOR) * eql) ** COMPRESS
    aspec = np.concatenate([aspec[:, :1], aspec, aspec[:, -1:]], axis=1)  # (T, 22)
    r = aspec @ idft.T  # (T, 13)
    cep = _lpc_cepstra(r)
    cep[:, :LPC_ORDER] *= lifter
    cep -= cep.mean(axis=0, keepdims=True)  # _Z
    d = _deltas(cep)
    return np.concatenate([cep, d, _deltas(d)], axis=1)


# --------------------------------------------------------------------------- scoring


def component_loglik(g: Gmm, x: np.ndarray) -> np.ndarray:
    """(T, M): log of each weighted Gaussian of ``g`` at each frame of ``x`` (T, D)."""
    prec = 1.0 / g.var  # (M, D)
    const = g.log_w - 0.5 * (np.log(2 * np.pi * g.var).sum(1) + (g.mean ** 2 * prec).sum(1))
    return const[None, :] - 0.5 * ((x * x) @ prec.T) + x @ (g.mean * prec).T


def state_loglik(model: HtkModel, keys: list[str], feats: np.ndarray) -> np.ndarray:
    """(T, len(keys)) log-likelihood of each frame under each state's GMM."""
    out = np.empty((len(feats), len(keys)))
    for j, key in enumerate(keys):
        out[:, j] = logsumexp(component_loglik(model.gmms[key], feats), axis=1)
    return out


# --------------------------------------------------------------------------- alignment


@dataclass
class _Graph:
    keys: list[str]  # GMM key of each emitting state
    owner: list[tuple[int, str]]  # (word index or -1, unit name) of each emitting state
    pred: np.ndarray  # (S, K) predecessor states (padded with 0 at LOG_ZERO)
    pred_lp: np.ndarray  # (S, K)
    start_lp: np.ndarray  # (S,)
    end_lp: np.ndarray  # (S,)


def _build_graph(model: HtkModel, prons: list[tuple[tuple[str, ...], ...]]) -> _Graph:
    """Units: [sil] w_1 sp w_2 sp ... w_n [sil]; non-emitting nodes folded into arcs."""
    keys: list[str] = []
    owner: list[tuple[int, str]] = []
    arcs: dict[int, dict[int, float]] = {}  # emitting -> emitting
    # Nodes: ints >= 0 are emitting states; non-emitting nodes are ("n", id) handled by eps.
    eps: dict[object, dict[object, float]] = {}  # node -> {node: logp}, node emitting or not

    def add_arc(a, b, lp):
        d = eps.setdefault(a, {})
        d[b] = max(d.get(b, LOG_ZERO), lp)

    node_ids = itertools.count()

    def new_node():
        return ("n", next(node_ids))

    def add_hmm(name: str, word: int, entry, exit_):
        hmm = model.hmms[name]
        base = len(keys)
        n = len(hmm.states)
        for k in hmm.states:
            keys.append(k)
            owner.append((word, name))
        lt = hmm.log_trans
        ids = [entry] + [base + s for s in range(n)] + [exit_]
        for a in range(n + 2):
            for b in range(n + 2):
                if np.isfinite(lt[a, b]) and a != n + 1:
                    add_arc(ids[a], ids[b], float(lt[a, b]))

    start = new_node()
    after_sil = new_node()
    add_hmm("sil", -1, start, after_sil)
    add_arc(start, after_sil, 0.0)  # the leading silence is optional
    node = after_sil
    for w, variants in enumerate(prons):
        end_w = new_node()
        for pron in variants:
            cur = node
            for ph in pron:
                nxt = new_node()
                add_hmm(ph, w, cur, nxt)
                cur = nxt
            add_arc(cur, end_w, 0.0)
        if w + 1 < len(prons):
            after_sp = new_node()
            add_hmm("sp", -1, end_w, after_sp)
            node = after_sp
        else:
            node = end_w
    final = new_node()
    add_hmm("sil", -1, node, final)
    add_arc(node, final, 0.0)

    S = len(keys)

    def closure(src) -> dict[object, float]:
        """Every emitting state (or the final node) reachable from src through non-emitting
        nodes, with the best log-probability."""
        out: dict[object, float] = {}
        stack = [(b, lp) for b, lp in eps.get(src, {}).items()]
        while stack:
            b, lp = stack.pop()
            if isinstance(b, int) or b == final:
                if lp > out.get(b, LOG_ZERO):
                    out[b] = lp
                continue
            for c, lp2 in eps.get(b, {}).items():
                stack.append((c, lp + lp2))
        return out

    start_lp = np.full(S, LOG_ZERO)
    end_lp = np.full(S, LOG_ZERO)
    for b, lp in closure(start).items():
        if isinstance(b, int):
            start_lp[b] = lp
    for a in range(S):
        for b, lp in closure(a).items():
            if b == final:
                end_lp[a] = max(end_lp[a], lp)
            else:
                arcs.setdefault(b, {})
                arcs[b][a] = max(arcs[b].get(a, LOG_ZERO), lp)
    K = max(len(v) for v in arcs.values())
    pred = np.zeros((S, K), dtype=np.int64)  # padding: state 0 at LOG_ZERO, never chosen
    pred_lp = np.full((S, K), LOG_ZERO)
    for b, d in arcs.items():
        for k, (a, lp) in enumerate(d.items()):
            pred[b, k] = a
            pred_lp[b, k] = lp
    return _Graph(keys, owner, pred, pred_lp, start_lp, end_lp)


def viterbi(graph: _Graph, loglik: np.ndarray) -> np.ndarray:
    """(T, S) state log-likelihoods -> (T,) best state sequence."""
    T, S = loglik.shape
    rows = np.arange(S)
    bp = np.zeros((T, S), dtype=np.int32)
    delta = graph.start_lp + loglik[0]
    for t in range(1, T):
        cand = delta[graph.pred] + graph.pred_lp
        k = np.argmax(cand, axis=1)
        bp[t] = graph.pred[rows, k]
        delta = cand[rows, k] + loglik[t]
    final = delta + graph.end_lp
    s = int(np.argmax(final))
    if final[s] < LOG_ZERO / 2:
        raise AlignmentError("no path through the HTK model")
    path = np.empty(T, dtype=np.int64)
    for t in range(T - 1, -1, -1):
        path[t] = s
        s = int(bp[t, s])
    return path


def mllr_adapted(model: HtkModel, feats: np.ndarray, frame_keys: list[str],
                 min_frames: int = 300) -> HtkModel:
    """The model with its Gaussian means moved by MLLR (Leggetter & Woodland 1995; the
    row-by-row solution for diagonal covariances, Gales & Woodland 1996): one affine transform
    ``mu' = A mu + b`` for the speech states and one for the silence states (``sil``, ``sp``),
    estimated from ``feats`` (T, 39) with each frame assigned to the state ``frame_keys[t]`` of
    a first alignment and to its Gaussians by their posterior. A class seen in fewer than
    ``min_frames`` frames keeps its means. The self-training of speaker-adaptive aligners, in
    its simplest form."""
    silence = {k for name in ("sil", "sp") for k in model.hmms[name].states}
    keys = np.asarray(frame_keys)
    occ: dict[str, np.ndarray] = {}
    first: dict[str, np.ndarray] = {}
    for key in set(frame_keys):
        x = feats[keys == key]
        ll = component_loglik(model.gmms[key], x)  # (n, M)
        post = np.exp(ll - logsumexp(ll, axis=1, keepdims=True))
        occ[key], first[key] = post.sum(axis=0), post.T @ x
    gmms = dict(model.gmms)
    for is_sil in (False, True):
        seen = [k for k in occ if (k in silence) == is_sil]
        if np.isin(keys, seen).sum() < min_frames:
            continue
        mu = np.concatenate([model.gmms[k].mean for k in seen])  # (G, D)
        prec = np.concatenate([1.0 / model.gmms[k].var for k in seen])
        g_occ = np.concatenate([occ[k] for k in seen])  # (G,)
        g_first = np.concatenate([first[k] for k in seen])  # (G, D)
        xi = np.concatenate([np.ones((len(mu), 1)), mu], axis=1)  # extended means (G, D + 1)
        dim = mu.shape[1]
        w = np.empty((dim, dim + 1))
        for i in range(dim):
            gram = (xi * (g_occ * prec[:, i])[:, None]).T @ xi
            rhs = xi.T @ (g_first[:, i] * prec[:, i])
            w[i] = np.linalg.solve(gram + 1e-6 * np.eye(dim + 1), rhs)
        for k, g in model.gmms.items():
            if (k in silence) == is_sil:
                gmms[k] = Gmm(g.log_w, g.mean @ w[:, 1:].T + w[:, 0], g.var)
    return HtkModel(gmms, model.hmms)


def _best_path(model: HtkModel, graph: _Graph, feats: np.ndarray,
               outside: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(best state sequence (T,), state log-likelihoods (T, S)); ``outside`` (T, S): cells
    the band forbids."""
    uniq = sorted(set(graph.keys))
    col = {k: i for i, k in enumerate(uniq)}
    ll = state_loglik(model, uniq, feats)[:, [col[k] for k in graph.keys]]
    if outside is not None:
        ll[outside] = LOG_ZERO
    return viterbi(graph, ll), ll


def align_words(wave: np.ndarray, prons: list[tuple[tuple[str, ...], ...]],
                offset_s: float = 0.0, near: list[tuple[float, float]] | None = None,
                band_s: float = 0.05, adapt: int = 0) -> tuple[list[tuple[float, float]], float]:
    """Word (start, end) seconds and the mean per-frame log-likelihood of the best path.

    ``near``: a first alignment's word spans; each word's states are then allowed only
    within ``band_s`` of its span there. ``adapt``: rounds of MLLR adaptation of the means to
    this recording (:func:`mllr_adapted`), each from the previous round's alignment."""
    model = load_model()
    feats = plp_features(wave)
    if len(feats) == 0:
        raise AlignmentError("the audio is shorter than one 25 ms analysis window")
    graph = _build_graph(model, prons)
    word_of = np.array([w for w, _ in graph.owner])
    outside = None
    if near is not None:
        t_s = np.arange(len(feats)) * HOP / SAMPLE_RATE_HZ + offset_s
        outside = np.zeros((len(feats), len(graph.keys)), dtype=bool)
        for w, (s0, e0) in enumerate(near):
            outside[np.ix_((t_s < s0 - band_s) | (t_s >= e0 + band_s), word_of == w)] = True
    path, ll = _best_path(model, graph, feats, outside)
    for _ in range(adapt):
        model = mllr_adapted(model, feats, [graph.keys[s] for s in path])
        path, ll = _best_path(model, graph, feats, outside)
    words = word_of[path]
    spans = []
    for w in range(len(prons)):
        idx = np.flatnonzero(words == w)
        if len(idx) == 0:
            raise AlignmentError(f"word {w} got no frames")
        spans.append((idx[0] * HOP / SAMPLE_RATE_HZ + offset_s,
                      (idx[-1] + 1) * HOP / SAMPLE_RATE_HZ + offset_s))
    fit = float(ll[np.arange(len(path)), path].mean())
    return spans, fit
