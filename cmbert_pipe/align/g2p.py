"""Offline grapheme-to-phoneme conversion for words missing from the pronunciation dictionary.

    >>> NeuralG2P().predict("ajfish")          # ARPAbet without stress marks
    ('AE', 'JH', 'F', 'IH', 'SH')

The model is the GRU encoder-decoder (Cho et al., 2014, "Learning Phrase Representations
using RNN Encoder-Decoder for Statistical Machine Translation"; greedy decoding as in
Sutskever et al., 2014) whose trained weights ship as ``checkpoint20.npz`` inside the
``g2p-en`` wheel (Park & Kim, trained on CMUdict). Importing the ``g2p_en`` package itself
would start NLTK downloads, so only the weight file is located (without importing the
package) and the network is run here in NumPy. Nothing touches the network.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from pathlib import Path

import numpy as np

from cmbert_pipe.errors import AlignmentError

log = logging.getLogger(__name__)

# Symbol tables of the trained weights (fixed by the checkpoint: rows of the embeddings).
GRAPHEMES = ("<pad>", "<unk>", "</s>") + tuple("abcdefghijklmnopqrstuvwxyz")
PHONEMES = ("<pad>", "<unk>", "<s>", "</s>",
    "AA0", "AA1", "AA2", "AE0", "AE1", "AE2", "AH0", "AH1", "AH2", "AO0", "AO1", "AO2", "AW0",
    "AW1", "AW2", "AY0", "AY1", "AY2", "B", "CH", "D", "DH", "EH0", "EH1", "EH2", "ER0", "ER1",
    "ER2", "EY0", "EY1", "EY2", "F", "G", "HH", "IH0", "IH1", "IH2", "IY0", "IY1", "IY2", "JH",
    "K", "L", "M", "N", "NG", "OW0", "OW1", "OW2", "OY0", "OY1", "OY2", "P", "R", "S", "SH",
    "T", "TH", "UH0", "UH1", "UH2", "UW", "UW0", "UW1", "UW2", "V", "W", "Y", "Z", "ZH",
)
_END_G = GRAPHEMES.index("</s>")
_START_P, _END_P = PHONEMES.index("<s>"), PHONEMES.index("</s>")
MAX_PHONES = 40  # decoding stops here even without </s>


def checkpoint_path() -> Path:
    """The weight file inside the installed ``g2p_en`` package (found without importing it)."""
    spec = importlib.util.find_spec("g2p_en")
    if spec is None or not spec.submodule_search_locations:
        raise AlignmentError("the g2p-en package is not installed (pip install g2p-en)")
    path = Path(next(iter(spec.submodule_search_locations))) / "checkpoint20.npz"
    if not path.is_file():
        raise AlignmentError("g2p-en is installed without its model weights", path)
    return path


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class NeuralG2P:
    """Greedy GRU encoder-decoder G2P (see the module docstring). Thread-compatible, pure NumPy."""

    def __init__(self, path: str | Path | None = None):
        weights = np.load(path or checkpoint_path())
        self.w = {k: weights[k].astype(np.float64) for k in weights.files}
        self.hidden = self.w["enc_w_hh"].shape[1]  # 256

    def _gru_step(self, x: np.ndarray, h: np.ndarray, prefix: str) -> np.ndarray:
        """One GRU step; gate order in the packed weights is (reset, update, new).

        x: (E,) input, h: (H,) state -> (H,) new state.
        """
        gi = self.w[f"{prefix}_w_ih"] @ x + self.w[f"{prefix}_b_ih"]  # (3H,)
        gh = self.w[f"{prefix}_w_hh"] @ h + self.w[f"{prefix}_b_hh"]  # (3H,)
        H = self.hidden
        reset = _sigmoid(gi[:H] + gh[:H])
        update = _sigmoid(gi[H : 2 * H] + gh[H : 2 * H])
        new = np.tanh(gi[2 * H :] + reset * gh[2 * H :])
        return (1.0 - update) * new + update * h

    def predict(self, word: str) -> tuple[str, ...]:
        """ARPAbet phones (stress digits removed) for a lower-case word; () if it has no letters."""
        letters = [GRAPHEMES.index(c) for c in word.lower() if c in GRAPHEMES[3:]]
        if not letters:
            return ()
        h = np.zeros(self.hidden)
        for g in letters + [_END_G]:
            h = self._gru_step(self.w["enc_emb"][g], h, "enc")
        phones: list[str] = []
        prev = _START_P
        for _ in range(MAX_PHONES):
            h = self._gru_step(self.w["dec_emb"][prev], h, "dec")
            logits = self.w["fc_w"] @ h + self.w["fc_b"]  # (74,)
            prev = int(np.argmax(logits))
            if prev == _END_P:
                break
            if prev > _END_P:
                phones.append(PHONEMES[prev].rstrip("012"))
        return tuple(phones)


@functools.lru_cache(maxsize=1)
def default_g2p() -> NeuralG2P:
    """One shared model per process (loading takes a few milliseconds)."""
    return NeuralG2P()


@functools.lru_cache(maxsize=4096)
def g2p(word: str) -> tuple[str, ...]:
    """Cached :meth:`NeuralG2P.predict` with the default model."""
    return default_g2p().predict(word)
