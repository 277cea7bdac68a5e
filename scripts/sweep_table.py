"""One row per configuration of one or more sweeps, its seeds pooled: mean, spread and runs.

    python scripts/sweep_table.py outputs/sentiment/multiruns/<time> [more sweep dirs] \
        --metrics test/acc val/acc --per-sec train/sentences_per_sec

A configuration is a job's overrides without `seed=` (and without the overrides every job shares);
each metric is shown as mean ± half the range (min–max) over its seeds, then the mean training
minutes and throughput. Failed jobs are listed below the table, not averaged.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from rnnlab.utils.sweep import collect  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweeps", nargs="+", type=Path, help="sweep directories (each holds numbered job directories)")
    parser.add_argument("--metrics", nargs="+", default=["test/acc", "val/acc"])
    parser.add_argument("--per-sec", default="train/sentences_per_sec", help="the throughput metric")
    parser.add_argument("--drop", nargs="*", default=["seed"], help="override keys pooled over")
    args = parser.parse_args()

    rows, failed = [], []
    for sweep in args.sweeps:
        if not sweep.is_dir():
            sys.exit(f"{sweep}: not a directory (give the sweep's directory, e.g. outputs/sentiment/multiruns/<time>)")
        for row in collect(sweep):
            (rows if row["status"] == "ok" else failed).append(row)
    if not rows:
        sys.exit("no finished jobs found in " + ", ".join(map(str, args.sweeps)))
    split = [[o for o in r["overrides"].split() if o.split("=", 1)[0].lstrip("+") not in args.drop] for r in rows]
    common = [o for o in split[0] if all(o in s for s in split[1:])]
    groups: dict[str, list[dict]] = {}
    for row, overrides in zip(rows, split):
        groups.setdefault(" ".join(o for o in overrides if o not in common) or "(all)", []).append(row)

    def spread(values: list[float]) -> str:
        mean = statistics.fmean(values)
        if len(values) == 1:
            return f"{mean:.3f}"
        return f"{mean:.3f} ± {(max(values) - min(values)) / 2:.3f} ({min(values):.3f}–{max(values):.3f})"

    print(f"All jobs: `{' '.join(common)}`\n" if common else "", end="")
    print("| configuration | runs | " + " | ".join(args.metrics) + f" | minutes | {args.per_sec} |")
    print("|---|---:|" + "---:|" * (len(args.metrics) + 2))
    for name, group in groups.items():
        cells = [spread([float(r[m]) for r in group if m in r]) if any(m in r for r in group) else "" for m in args.metrics]
        minutes = statistics.fmean(float(r.get("train/time_sec", "nan")) for r in group) / 60
        speed = statistics.fmean(float(r.get(args.per_sec, "nan")) for r in group)
        print(f"| `{name}` | {len(group)} | " + " | ".join(cells) + f" | {minutes:.1f} | {speed:,.0f} |")
    for row in failed:
        print(f"\nfailed: job {row['job']} ({row['overrides']}): {row['error']}")


if __name__ == "__main__":
    main()
