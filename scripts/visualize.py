"""What a char-LM's hidden units track: each character coloured by one unit's activation (Karpathy,
Johnson & Fei-Fei 2015), for the units that correlate best with simple features of the text.

    python scripts/visualize.py ckpt_path=<run>/checkpoints/best.ckpt input=data/tinyshakespeare/input.txt
    python scripts/visualize.py ckpt_path=... input="ROMEO:\\nWhat (say you) now?" units=hidden:12,cell:40 out=units/

Options (key=value): ckpt_path (a charlm checkpoint, one-direction rnnlab layer); input (a file, or
the text itself, \\n for a line break); start / chars (the slice of it that is read: from character
`start`, at most `chars` characters, 20,000 by default); show (characters drawn, 2,000); top (units
reported per feature, 3); units (units to draw, as state:unit, instead of each feature's best); out
(the folder written, ./visualize).

Writes out/units.md (the top units per feature and their correlation), out/units.html (the text
coloured by each drawn unit: red positive, blue negative) and out/unit_<state>_<n>.png, one per
drawn unit; prints the table.
"""

from __future__ import annotations

import html
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from rnnlab.entry import run  # noqa: E402
from rnnlab.nn import Recurrent  # noqa: E402
from rnnlab.tasks import load_module  # noqa: E402
from rnnlab.tasks.charlm.units import correlations, table_markdown, text_features, top_units, unit_activations  # noqa: E402
from rnnlab.utils.errors import UserError  # noqa: E402

DEFAULTS = {"ckpt_path": None, "input": None, "start": "0", "chars": "20000", "show": "2000", "top": "3", "units": None, "out": "visualize"}
USAGE = "python scripts/visualize.py ckpt_path=<run>/checkpoints/best.ckpt input=<file or text> [show=2000 top=3 units=hidden:12 out=visualize]"


def parse(argv: list[str]) -> dict[str, str | None]:
    opts = dict(DEFAULTS)
    for arg in argv:
        key, eq, value = arg.partition("=")
        if not eq or key not in opts:
            raise UserError(f"{arg!r}: options are key=value with key one of {sorted(opts)}. Usage: {USAGE}")
        opts[key] = value
    for key in ("ckpt_path", "input"):
        if not opts[key]:
            raise UserError(f"{key}= is required. Usage: {USAGE}")
    for key in ("start", "chars", "show", "top"):
        if not str(opts[key]).isdigit() or (key != "start" and int(opts[key]) == 0):
            raise UserError(f"{key}={opts[key]!r}: must be a {'non-negative' if key == 'start' else 'positive'} whole number.")
    return opts


def read_input(given: str, start: int, chars: int) -> str:
    path = Path(given)
    try:
        text = path.read_text(encoding="utf-8") if path.is_file() else given.replace("\\n", "\n").replace("\\t", "\t")
    except UnicodeDecodeError as e:
        raise UserError(f"input={given}: the file is not UTF-8 text (byte {e.start}); convert it (iconv -t utf-8).") from e
    text = text[start : start + chars]
    if len(text) < 2:
        raise UserError(f"input={given}: {len(text)} character(s) from start={start}; give a text of at least two characters.")
    return text


def strongest(acts: torch.Tensor, features: dict[str, torch.Tensor]) -> str:
    """The feature one unit's activation (T,) correlates with most, as "feature: r = +0.91"."""
    rs = {name: float(correlations(acts[:, None], f)[0]) for name, f in features.items()}
    rs = {name: r for name, r in rs.items() if r == r}  # NaN: the text never shows the feature
    if not rs:
        return "no feature varies in this text"
    name = max(rs, key=lambda k: abs(rs[k]))
    return f"{name}: r = {rs[name]:+.3f}"


def chosen_units(spec: str | None, top: dict, states: dict[str, torch.Tensor],
                 features: dict[str, torch.Tensor]) -> list[tuple[str, int, str]]:
    """(state, unit, why) to draw: `spec` ("hidden:12,cell:40"), else each feature's best unit."""
    if spec is None:
        seen, out = set(), []
        for feature, units in top.items():
            if units and units[0][:2] not in seen:
                seen.add(units[0][:2])
                out.append((units[0][0], units[0][1], f"{feature}: r = {units[0][2]:+.3f}"))
        return out
    out = []
    for item in spec.split(","):
        kind, _, n = item.partition(":")
        if kind not in states or not n.isdigit() or int(n) >= states[kind].size(1):
            raise UserError(f"units={spec!r}: {item!r} must be state:unit with state one of {sorted(states)} and unit below "
                            f"{next(iter(states.values())).size(1)} (e.g. hidden:12).")
        out.append((kind, int(n), strongest(states[kind][:, int(n)], features)))
    return out


def colour(v: float) -> str:
    """Karpathy's map: red for positive, blue for negative activation, white at 0 (v in [-1, 1])."""
    v = max(-1.0, min(1.0, v))
    fade = int(255 * (1 - abs(v)))
    return f"rgb(255,{fade},{fade})" if v >= 0 else f"rgb({fade},{fade},255)"


def to_html(text: str, sections: list[tuple[str, torch.Tensor]]) -> str:
    parts = ["<!doctype html><meta charset='utf-8'><title>rnnlab: hidden units</title>",
             "<style>body{font-family:sans-serif} pre{font:13px/1.35 monospace;white-space:pre-wrap}</style>"]
    for title, acts in sections:
        spans = []
        for ch, v in zip(text, acts.tolist()):
            shown = "↵\n" if ch == "\n" else html.escape(ch)
            spans.append(f"<span style='background:{colour(v)}' title='{v:+.3f}'>{shown}</span>")
        parts.append(f"<h3>{html.escape(title)}</h3><pre>{''.join(spans)}</pre>")
    return "\n".join(parts)


def to_png(path: Path, text: str, acts: torch.Tensor, title: str, width: int = 100) -> None:
    """The text laid out as it reads (wrapped at `width`), each character on its unit's colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LinearSegmentedColormap

    cells, row, col = [], 0, 0
    for ch, v in zip(text, acts.tolist()):
        cells.append((row, col, "↵" if ch == "\n" else ch, v))
        col += 1
        if ch == "\n" or col == width:
            row, col = row + 1, 0
    rows = row + 1
    fig, ax = plt.subplots(figsize=(width * 0.09 + 0.4, rows * 0.19 + 0.6), dpi=110)
    cmap = LinearSegmentedColormap.from_list("karpathy", ["#0000ff", "#ffffff", "#ff0000"])
    for r, c, ch, v in cells:
        ax.add_patch(plt.Rectangle((c, -r - 1), 1, 1, color=cmap((max(-1, min(1, v)) + 1) / 2), lw=0))
        ax.text(c + 0.5, -r - 0.5, ch, ha="center", va="center", fontsize=7, family="monospace")
    ax.set_xlim(0, width)
    ax.set_ylim(-rows, 0)
    ax.axis("off")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def visualize(argv: list[str]) -> str:
    opts = parse(argv)
    module = load_module(opts["ckpt_path"], expected="charlm")
    net = module.net
    if not isinstance(net.rnn, Recurrent) or net.rnn.bidirectional:
        raise UserError(f"ckpt_path={opts['ckpt_path']}: its recurrent layer is {type(net.rnn).__name__}"
                        f"{' (bidirectional)' if getattr(net.rnn, 'bidirectional', False) else ''}; visualize.py reads "
                        "the states of a one-direction rnnlab layer (model.layer=rnnlab).")
    text = read_input(opts["input"], int(opts["start"]), int(opts["chars"]))
    ids = module.vocab.encode(text, f"input={opts['input']}")
    states = unit_activations(net, ids)
    # What the network shows is bounded like h: an LSTM's cell state is drawn through tanh, as it is read.
    shown = {k: (v.tanh() if k == "cell" else v) for k, v in states.items()}
    features = text_features(text)
    top = top_units(states, features, int(opts["top"]))
    table = table_markdown(top)
    drawn = chosen_units(opts["units"], top, states, features)  # a bad units= fails before anything is written
    out = Path(opts["out"])
    out.mkdir(parents=True, exist_ok=True)
    n = int(opts["show"])
    sections = []
    for kind, unit, why in drawn:
        title = f"{kind} unit {unit} ({why})"
        sections.append((title, shown[kind][:n, unit]))
        to_png(out / f"unit_{kind}_{unit}.png", text[:n], shown[kind][:n, unit], title)
    header = f"{len(text):,} characters of {opts['input']} through {opts['ckpt_path']} ({', '.join(states)} states of the top layer)\n\n"
    (out / "units.md").write_text(header + table + "\n", encoding="utf-8")
    (out / "units.html").write_text(to_html(text[:n], sections), encoding="utf-8")
    print(table)
    return table


if __name__ == "__main__":
    run(visualize, sys.argv[1:])  # a bad option or file: one paragraph on stderr, exit status 2
