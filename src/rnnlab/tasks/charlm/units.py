"""What a char-LM's hidden units track (Karpathy, Johnson & Fei-Fei 2015, "Visualizing and
Understanding Recurrent Networks"): each unit's activation along a text, correlated with simple
features of that text, so the telling units are found by measurement, not by scrolling.

`unit_activations` runs a trained `CharLM` over a text and returns every unit's hidden state (and an
LSTM's cell state) after each character; `text_features` computes the features character by
character; `correlations` / `top_units` rank the units by Pearson correlation with each feature.
scripts/visualize.py draws the result.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from rnnlab.nn.probe import layer_states

OPEN_QUOTES, CLOSE_QUOTES = {'"': '"', "“": "”", "«": "»"}, {'"', "”", "»"}
BRACKETS = {"(": ")", "[": "]", "{": "}"}


def text_features(text: str) -> dict[str, Tensor]:
    """Per character (each (len(text),) float64), what holds at it, having read it:

    - inside quotes: between an opening quote ("“«) and its closing one, the quotes included;
    - inside brackets: at bracket depth > 0 ((, [, {), the brackets included;
    - position in line: characters since the last line break (0: the first of a line);
    - after a line break: 1 at the first character of every line after the first;
    - upper case: an upper-case letter.
    """
    quote = [0.0] * len(text)
    bracket = [0.0] * len(text)
    position = [0.0] * len(text)
    start = [0.0] * len(text)
    upper = [0.0] * len(text)
    closing: str | None = None
    depth, column = 0, 0
    for i, ch in enumerate(text):
        if closing is None and ch in OPEN_QUOTES:
            closing = OPEN_QUOTES[ch]
            quote[i] = 1.0
        elif closing is not None:
            quote[i] = 1.0
            if ch == closing or (closing == '"' and ch in CLOSE_QUOTES):
                closing = None
        if ch in BRACKETS:
            depth += 1
        bracket[i] = float(depth > 0)
        if ch in BRACKETS.values() and depth > 0:
            depth -= 1
        position[i] = float(column)
        start[i] = float(i > 0 and text[i - 1] == "\n")
        column = 0 if ch == "\n" else column + 1
        upper[i] = float(ch.isupper())
    values = {"inside quotes": quote, "inside brackets": bracket, "position in line": position,
              "after a line break": start, "upper case": upper}
    return {name: torch.tensor(v, dtype=torch.float64) for name, v in values.items()}


@torch.no_grad()
def unit_activations(net: torch.nn.Module, ids: Tensor) -> dict[str, Tensor]:
    """The top layer's states after each character of ids: (T,) of a `CharLM` `net` whose `rnn` is a
    one-direction rnnlab layer: {"hidden": (T, H)} and, for an LSTM, {"cell": (T, H)}, from a zero state."""
    states = layer_states(net.rnn, net.embed(ids[None]))[-1]  # the top layer; each (T, 1, H)
    names = ("hidden", "cell")
    return {name: s[:, 0].double() for name, s in zip(names, states)}


def correlations(acts: Tensor, feature: Tensor) -> Tensor:
    """Pearson r of each unit with the feature: acts (T, U), feature (T,) → (U,); NaN where either is
    constant over the text (a feature the text never shows says nothing)."""
    a = acts - acts.mean(0)
    f = feature - feature.mean()
    denom = a.norm(dim=0) * f.norm()
    r = (a * f[:, None]).sum(0) / denom
    return torch.where(denom > 1e-12, r, torch.full_like(r, float("nan")))


def top_units(states: dict[str, Tensor], features: dict[str, Tensor], k: int = 3) -> dict[str, list[tuple[str, int, float]]]:
    """For each feature, the k units of any state kind with the largest |r|: [(state, unit, r), ...],
    best first; [] for a feature constant over the text."""
    out: dict[str, list[tuple[str, int, float]]] = {}
    for name, feature in features.items():
        ranked: list[tuple[str, int, float]] = []
        for kind, acts in states.items():
            r = correlations(acts, feature)
            ranked += [(kind, u, float(r[u])) for u in range(r.numel()) if not torch.isnan(r[u])]
        out[name] = sorted(ranked, key=lambda t: -abs(t[2]))[:k]
    return out


def table_markdown(top: dict[str, Sequence[tuple[str, int, float]]]) -> str:
    """The top units per feature as a Markdown table."""
    rows = ["| feature | unit (state) | correlation r |", "|---|---|---:|"]
    for name, units in top.items():
        if not units:
            rows.append(f"| {name} | (not in this text) | |")
        for kind, unit, r in units:
            rows.append(f"| {name} | {unit} ({kind}) | {r:+.3f} |")
    return "\n".join(rows)
