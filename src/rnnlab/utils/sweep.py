"""Run bookkeeping: each job's final metrics as JSON, and a sweep's summary table."""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"


def write_metrics(output_dir: str | Path, metrics: dict[str, Any]) -> Path:
    """Save a run's final metrics where the sweep summary (and people) will look for them."""
    path = Path(output_dir) / METRICS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return path


def collect(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """One row per job directory of a sweep: job, overrides, then its metrics (empty if it failed)."""
    rows = []
    for job_dir in sorted(Path(sweep_dir).iterdir(), key=lambda p: (len(p.name), p.name)):
        overrides_file = job_dir / ".hydra" / "overrides.yaml"
        if not overrides_file.is_file():
            continue
        overrides = OmegaConf.to_container(OmegaConf.load(overrides_file))
        metrics_file = job_dir / METRICS_FILE
        metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
        rows.append({"job": job_dir.name, "overrides": " ".join(overrides), **metrics})
    return rows


FIRST = ["val/loss", "val/bpc", "val/ppl", "test/loss", "test/bpc", "test/ppl", "train/loss"]


def write_summary(sweep_dir: str | Path) -> list[Path]:
    """`summary.csv` (every override of each job) and `summary.md` (the overrides that differ
    between jobs, the shared ones above the table) in `sweep_dir`; returns their paths."""
    sweep_dir = Path(sweep_dir)
    rows = collect(sweep_dir)
    if not rows:
        return []
    keys = list(dict.fromkeys(k for row in rows for k in row if k not in ("job", "overrides")))
    columns = ["job", "overrides", *[k for k in FIRST if k in keys], *[k for k in keys if k not in FIRST]]
    csv_path, md_path = sweep_dir / "summary.csv", sweep_dir / "summary.md"
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "nan" if math.isnan(v) else f"{v:.4g}"
        return "" if v is None else str(v).replace("|", "\\|")

    split = [row["overrides"].split() for row in rows]
    common = [o for o in split[0] if all(o in other for other in split[1:])] if len(rows) > 1 else []
    lines = [f"All jobs: `{' '.join(common)}`", ""] if common else []
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row, overrides in zip(rows, split):
        varying = " ".join(o for o in overrides if o not in common)
        lines.append("| " + " | ".join(cell(varying if c == "overrides" else row.get(c)) for c in columns) + " |")
    md_path.write_text("\n".join(lines) + "\n")
    return [csv_path, md_path]


class SweepSummary(Callback):
    """Hydra callback: at the end of a multirun, tabulate every job's overrides and metrics.

    Reads the files the jobs wrote (`.hydra/overrides.yaml`, `metrics.json`), so it works with
    any launcher, in-process or not, and also lists jobs that failed (without metrics).
    """

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        paths = write_summary(config.hydra.sweep.dir)
        if paths:
            log.info("Sweep summary: %s", ", ".join(str(p) for p in paths))
