"""Plot one metric of several runs in one PNG (e.g. val/loss of rnn, gru and lstm).

    python scripts/plot_runs.py outputs/charlm/multiruns/<time> --metric val/loss --out docs/charlm_models.png
    python scripts/plot_runs.py run_a run_b --labels rnn lstm --x time

Each argument is a run directory or any folder above runs: every run found below it (a folder with
TensorBoard event files or a Lightning metrics.csv) is one curve. A curve is named by the Hydra
overrides that differ between the runs (`model=gru`), else by its folder. Also prints each run's
last and best value (the lowest of a loss, the highest of an accuracy).
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt  # noqa: E402


@dataclass
class Run:
    path: Path  # the run directory (holds .hydra/ when Hydra made it)
    steps: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # seconds since the first point (TensorBoard only)
    label: str = ""


def find_sources(root: Path) -> list[Path]:
    """Folders below `root` with TensorBoard events or a metrics.csv (one per logger of a run)."""
    events = {p.parent for p in root.rglob("events.out.tfevents*")}
    csvs = {p.parent for p in root.rglob("metrics.csv")}
    number = lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(p))]  # noqa: E731  job 2 before job 10
    return sorted(events | csvs, key=number)


def run_dir(source: Path) -> Path:
    """The run a logger folder belongs to: the nearest folder with a run's marks (.hydra/,
    checkpoints/, metrics.json), so its tensorboard/ and csv/ make one run; else the folder itself."""
    for p in (source, *source.parents):
        if (p / ".hydra").is_dir() or (p / "checkpoints").is_dir() or (p / "metrics.json").is_file():
            return p
    return source


def read_tensorboard(source: Path, metric: str) -> tuple[list[float], list[float], list[float]] | None:
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

    acc = EventAccumulator(str(source), size_guidance={SCALARS: 0})  # 0: keep every point
    acc.Reload()
    if metric not in acc.Tags().get("scalars", []):
        return None
    events = acc.Scalars(metric)
    t0 = events[0].wall_time if events else 0.0
    return [e.step for e in events], [e.value for e in events], [e.wall_time - t0 for e in events]


def read_csv(source: Path, metric: str) -> tuple[list[float], list[float], list[float]] | None:
    with open(source / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get(metric) not in (None, "")]
    if not rows:
        return None
    return [float(r["step"]) for r in rows], [float(r[metric]) for r in rows], []


def load_runs(paths: list[Path], metric: str) -> list[Run]:
    runs: dict[Path, Run] = {}
    for root in paths:
        if not root.exists():
            raise SystemExit(f"plot_runs: {root} does not exist.")
        for source in find_sources(root):
            data = read_tensorboard(source, metric) if any(source.glob("events.out.tfevents*")) else None
            if data is None and (source / "metrics.csv").is_file():
                data = read_csv(source, metric)
            rd = run_dir(source)
            if data is None or rd in runs:  # one curve per run, whichever logger has the metric first
                continue
            steps, values, times = data
            order = sorted(range(len(steps)), key=steps.__getitem__)
            runs[rd] = Run(rd, [steps[i] for i in order], [values[i] for i in order], [times[i] for i in order] if times else [])
    return list(runs.values())


def label_runs(runs: list[Run], given: list[str] | None = None) -> str | None:
    """Name each run by `given` (--labels, in order), else by the overrides not shared by all runs
    (`model=gru`), else by its folder. Returns an error message when `given` does not fit the runs."""
    if given:
        if len(given) != len(runs):
            return f"{len(given)} --labels for {len(runs)} runs."
        for run, label in zip(runs, given):
            run.label = label
        return None
    overrides = {}
    for run in runs:
        f = run.path / ".hydra" / "overrides.yaml"
        overrides[run.path] = [line[2:].strip() for line in f.read_text().splitlines() if line.startswith("- ")] if f.is_file() else []
    common = set.intersection(*(set(o) for o in overrides.values())) if overrides else set()
    for run in runs:
        varying = [o for o in overrides[run.path] if o not in common]
        run.label = " ".join(varying) or run.path.name
    return None


def save_figure(fig: plt.Figure, out: Path) -> None:
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    print(f"wrote {out}")


def higher_is_better(metric: str) -> bool:
    """Losses, perplexities and bits fall as a model improves; accuracies, F1 and BLEU rise."""
    return not any(word in metric for word in ("loss", "bpc", "ppl", "perplexity"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", type=Path, help="run directories, or folders above them (a sweep)")
    parser.add_argument("--metric", default="val/loss", help="scalar to plot (default: val/loss)")
    parser.add_argument("--out", type=Path, default=Path("runs.png"), help="PNG to write (default: runs.png)")
    parser.add_argument("--labels", nargs="*", help="curve names, in the order the runs are printed")
    parser.add_argument("--x", choices=("step", "time"), default="step", help="x axis: optimizer step or wall-clock minutes")
    parser.add_argument("--title", default=None)
    args = parser.parse_args(argv)

    runs = load_runs(args.paths, args.metric)
    if not runs:
        print(f"plot_runs: no run under {', '.join(map(str, args.paths))} logged {args.metric!r}.", file=sys.stderr)
        return 2
    error = label_runs(runs, args.labels)
    if error:
        print(f"plot_runs: {error}", file=sys.stderr)
        return 2

    many = len(runs) > 6  # then the legend goes beside the axes, where it hides no curve
    fig, ax = plt.subplots(figsize=(10.5 if many else 7, 4.5), dpi=120)
    colors = plt.get_cmap("tab20" if len(runs) > 10 else "tab10").colors
    for i, run in enumerate(runs):
        use_time = args.x == "time" and run.times
        xs = [t / 60 for t in run.times] if use_time else run.steps
        short = run.label if len(run.label) <= 60 else run.label[:57] + "..."  # keep the legend inside the figure
        ax.plot(xs, run.values, marker="o" if len(xs) < 30 else None, markersize=3, label=short, color=colors[i % len(colors)])
        best = max(run.values) if higher_is_better(args.metric) else min(run.values)
        print(f"{run.label}: last {run.values[-1]:.4f}, best {best:.4f} ({run.path})")
    ax.set_xlabel("wall-clock minutes" if args.x == "time" else "step")
    ax.set_ylabel(args.metric)
    ax.set_title(args.title or args.metric)
    ax.grid(alpha=0.3)
    if many:
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        ax.legend(fontsize="small")
    save_figure(fig, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
