"""What the sentiment task shows in TensorBoard besides curves: the confusion matrix as an image and
the validation sentences the model got most confidently wrong, as a Markdown table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from torch import Tensor

from rnnlab.tasks.common import markdown_escape


@dataclass(frozen=True)
class Mistake:
    """A misclassified sentence: its tokens, the true and the predicted label, and the predicted
    label's probability (how sure the model was of its wrong answer)."""

    tokens: tuple[str, ...]
    true: str
    predicted: str
    probability: float


def worst(mistakes: Sequence[Mistake], n: int) -> list[Mistake]:
    """The `n` most confident mistakes, most confident first."""
    return sorted(mistakes, key=lambda m: -m.probability)[:n]


def mistakes_markdown(mistakes: Sequence[Mistake]) -> str:
    """A Markdown table (TensorBoard renders text as Markdown), most confident mistake first."""
    if not mistakes:
        return "no misclassified sentences"
    rows = ["| true | predicted (probability) | sentence |", "|---|---|---|"]
    for m in mistakes:
        cells = [markdown_escape(m.true), f"{markdown_escape(m.predicted)} ({m.probability:.2f})", markdown_escape(" ".join(m.tokens))]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def confusion_image(matrix: Tensor, names: Sequence[str], title: str = "") -> np.ndarray:
    """The confusion matrix (rows: true class, columns: predicted; counts, shaded by the share of
    their row) as an RGB image (H, W, 3) uint8, drawn off-screen by matplotlib's Agg canvas (no pyplot,
    so no window system and no global figure state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    counts = matrix.detach().cpu().long().numpy()
    share = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    size = 2.5 + 0.6 * len(names)
    fig = Figure(figsize=(size, size), dpi=100)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    ticks = range(len(names))
    ax.set_xticks(ticks, labels=list(names), rotation=45, ha="right")
    ax.set_yticks(ticks, labels=list(names))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    for i in ticks:
        for j in ticks:
            ax.text(j, i, str(counts[i, j]), ha="center", va="center", color="white" if share[i, j] > 0.5 else "black")
    fig.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
