"""What the seq2seq task shows besides curves: attention heatmaps (source × target) and sample
translations beside their references."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch import Tensor

from rnnlab.tasks.common import markdown_escape


def attention_image(weights: Tensor, source: Sequence[str], target: Sequence[str], title: str = "") -> np.ndarray:
    """weights (T, S): target step t's attention over the source tokens, as an RGB image (H, W, 3)
    uint8, drawn off-screen (matplotlib's Agg canvas: no window system, no global figure state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    w = weights.detach().float().cpu().numpy()
    T, S = w.shape
    fig = Figure(figsize=(1.5 + 0.28 * S, 1.2 + 0.28 * T), dpi=100)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.imshow(w, cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(S), labels=[repr(t)[1:-1] if t.isspace() else t for t in source][:S], rotation=90, fontsize=8)
    ax.set_yticks(range(T), labels=list(target)[:T], fontsize=8)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def samples_markdown(rows: Sequence[tuple[str, str, str]]) -> str:
    """(source, reference, output) rows as a Markdown table (TensorBoard renders text as Markdown)."""
    lines = ["| source | reference | output |", "|---|---|---|"]
    lines += ["| " + " | ".join(markdown_escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
