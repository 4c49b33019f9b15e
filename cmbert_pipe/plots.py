"""Pictures of a prediction: the text attention beside the multimodal attention W_m.

CM-BERT (Yang, Xu & Gao, ACM MM 2020), Figure 4: for one utterance, the text-only attention
matrix next to the multimodal one, words on both axes, so one sees which words the audio made
more or less important. Both panels share one colour scale (0 to the larger maximum of the
two) and one colour bar, so equal colours mean equal weights.

    >>> from cmbert_pipe.plots import attention_png
    >>> prediction, maps = Predictor.from_pretrained(model_dir).analyse("clip.wav", "clip.txt")
    >>> attention_png(maps, "clip_attention.png", title=f"{prediction.score:+.2f}")
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cmbert_pipe.errors import ModelError

CELL_IN = 0.42  # inches per matrix cell: labels stay legible up to ~30 words
MIN_PANEL_IN = 3.2


def attention_png(maps, out_path: str | Path, title: str = "", dpi: int = 130) -> Path:
    """Draw ``maps`` (:class:`cmbert_pipe.predict.AttentionMaps`) to a PNG; return its path.

    Raises :class:`ModelError` when the model has no attention matrices (T-BERT and the
    shifting models have none)."""
    if maps.multimodal is None or maps.text is None:
        raise ModelError("this model has no attention matrices to draw (only CM-BERT does)")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    text = np.nan_to_num(np.asarray(maps.text, dtype=np.float64))  # (n, n)
    multi = np.nan_to_num(np.asarray(maps.multimodal, dtype=np.float64))  # (n, n)
    labels = list(maps.labels)
    n = len(labels)
    vmax = float(max(text.max(), multi.max(), 1e-6))
    panel_in = max(MIN_PANEL_IN, CELL_IN * n)
    fig, axes = plt.subplots(1, 2, figsize=(2 * panel_in + 1.6, panel_in + 0.9),
                             constrained_layout=True)
    image = None
    for ax, matrix, name in ((axes[0], text, "text attention  softmax(w_t·α_t)"),
                             (axes[1], multi, "multimodal attention  W_m")):
        image = ax.imshow(matrix, cmap="viridis", vmin=0.0, vmax=vmax, aspect="equal",
                          interpolation="nearest")
        ax.set_title(name, fontsize=10)
        ax.set_xticks(range(n), labels, rotation=60, ha="right", rotation_mode="anchor",
                      fontsize=9)
        ax.set_yticks(range(n), labels, fontsize=9)
        ax.set_xlabel("attended word (column)", fontsize=8)
        ax.set_ylabel("query word (row)", fontsize=8)
        ax.set_xticks(np.arange(-0.5, n, 1), minor=True)
        ax.set_yticks(np.arange(-0.5, n, 1), minor=True)
        ax.grid(which="minor", color="white", linewidth=0.4)
        ax.tick_params(which="minor", length=0)
    cbar = fig.colorbar(image, ax=list(axes), shrink=0.85, pad=0.02)
    cbar.set_label("attention weight (one scale for both panels)", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=dpi)
    plt.close(fig)
    return out_path
