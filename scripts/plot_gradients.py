"""‖∂L/∂h_t‖ over t for several runs in one PNG: the vanishing-gradient picture, measured.

    python train.py -m callbacks=diagnostics model=rnn,gru,lstm ...
    python scripts/plot_gradients.py outputs/charlm/multiruns/<time> --out docs/grad_through_time.png

Each argument is a run directory or a folder above runs: every run below it with a
grad_through_time.json (written by `callbacks=diagnostics`) is one curve per panel. The left panel
is the first validation (the network as initialised, nearly), the right the last; each curve is
divided by its value at the last step, so it reads as "how much of the gradient reaches back t
steps". Prints ‖∂L/∂h_1‖ / ‖∂L/∂h_T‖ and the step where the gradient first falls below 1e-3 of it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plot_runs import Run, label_runs, save_figure  # noqa: E402

FILE = "grad_through_time.json"  # rnnlab.utils.diagnostics.GradientThroughTime.FILE


def reach(norms: list[float], fraction: float = 1e-3) -> int | None:
    """How many steps back from the last the gradient keeps at least `fraction` of its final size."""
    for back, n in enumerate(reversed(norms)):
        if n < fraction * norms[-1]:
            return back
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", type=Path, help="run directories, or folders above them (a sweep)")
    parser.add_argument("--out", type=Path, default=Path("grad_through_time.png"))
    parser.add_argument("--labels", nargs="*", help="curve names, in the order the runs are printed")
    args = parser.parse_args(argv)

    files = sorted({f for root in args.paths for f in ([root / FILE] if (root / FILE).is_file() else root.rglob(FILE))})
    if not files:
        print(f"plot_gradients: no {FILE} under {', '.join(map(str, args.paths))} (train with callbacks=diagnostics).", file=sys.stderr)
        return 2
    runs = [Run(f.parent) for f in files]
    error = label_runs(runs, args.labels)
    if error:
        print(f"plot_gradients: {error}", file=sys.stderr)
        return 2

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), dpi=120, sharey=True)
    for run, f in zip(runs, files):
        saved = json.loads(f.read_text(encoding="utf-8"))
        for ax, i in zip(axes, (0, -1)):
            norms = saved["norms"][i]
            T = len(norms)
            ax.semilogy([T - t for t in range(1, T + 1)], [n / norms[-1] for n in norms], label=run.label)
        for name, i in (("first", 0), ("last", -1)):
            norms = saved["norms"][i]
            back = reach(norms)
            print(f"{run.label}: {name} validation (step {saved['steps'][i]}): ‖∂L/∂h_1‖/‖∂L/∂h_T‖ = {norms[0] / norms[-1]:.3g}, "
                  f"below 1e-3 of ‖∂L/∂h_T‖ {'after ' + str(back) + ' steps back' if back is not None else 'never'}")
    for ax, when in zip(axes, ("first validation", "last validation")):
        ax.set_xlabel("steps back from the loss (T − t)")
        ax.set_title(when)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("‖∂L/∂h_t‖ / ‖∂L/∂h_T‖")
    axes[1].legend(fontsize="small")
    save_figure(fig, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
