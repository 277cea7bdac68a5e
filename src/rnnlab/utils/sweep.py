"""Run bookkeeping: each job's final metrics (or its error) as JSON, and a sweep's summary table.

A sweep job that fails must not stop the sweep: the entry point records the error with
`record_failure` and returns NaN to the sweeper, and at the end `SweepSummary` lists every job with
its status and makes the sweep exit 1 if any failed. A single run that fails before writing anything
but its config and log removes its directory (`remove_unused_run_dir`).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
STATUS_FILE = "status.json"  # written by a sweep job that failed: {"status": "failed", "error": ...}
# What Hydra writes into a run directory before the job starts.
HYDRA_FILES = [".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml", "train.log", "eval.log"]


def write_metrics(output_dir: str | Path, metrics: dict[str, Any]) -> Path:
    """Save a run's final metrics where the sweep summary (and people) will look for them."""
    path = Path(output_dir) / METRICS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return path


def in_multirun() -> bool:
    """Whether this process runs a job of a Hydra sweep (`-m`), not a single run."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def record_failure(output_dir: str | Path | None, error: BaseException) -> None:
    """Log a sweep job's error and save it as the job's status.json, for the sweep summary."""
    from rnnlab.utils.errors import UserError

    message = str(error) if isinstance(error, UserError) else f"{type(error).__name__}: {error}"
    # A bad input is explained by its message; anything else needs its traceback to be fixed.
    log.error("job failed: %s", message, exc_info=not isinstance(error, UserError))
    if output_dir:
        path = Path(output_dir) / STATUS_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"status": "failed", "error": message}, indent=2) + "\n")


def remove_unused_run_dir(run_dir: str | Path | None) -> bool:
    """Delete a run directory that holds nothing but what Hydra wrote at the start (.hydra/, the log);
    returns whether it did. Anything else in it (checkpoints, events, a user's files) keeps it."""
    if not run_dir or not Path(run_dir).is_dir():
        return False
    run_dir = Path(run_dir).resolve()
    ours = {run_dir / f for f in HYDRA_FILES} | {run_dir / ".hydra"}
    if any(p not in ours for p in run_dir.rglob("*")):
        return False
    root = logging.getLogger()
    for handler in list(root.handlers):  # Hydra's file handler still has the log open
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).resolve().parent == run_dir:
            root.removeHandler(handler)
            handler.close()
    for path in sorted(ours, key=lambda p: len(p.parts), reverse=True):  # files before .hydra/
        if path.is_dir():
            path.rmdir()
        elif path.exists():
            path.unlink()
    run_dir.rmdir()
    # ... and, in the default layout <log_dir>/<task>/{runs,eval}/<time>, the two folders above it
    # when they are now empty: a first failed try leaves no trace at all.
    if run_dir.parent.name in ("runs", "eval"):
        for parent in (run_dir.parent, run_dir.parent.parent):
            if parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
    return True


def collect(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """One row per job directory of a sweep: job, status (ok / failed), overrides, its metrics and,
    for a failed job, its error."""
    rows = []
    for job_dir in sorted(Path(sweep_dir).iterdir(), key=lambda p: (len(p.name), p.name)):
        overrides_file = job_dir / ".hydra" / "overrides.yaml"
        if not overrides_file.is_file():
            continue
        overrides = OmegaConf.to_container(OmegaConf.load(overrides_file))
        metrics_file, status_file = job_dir / METRICS_FILE, job_dir / STATUS_FILE
        metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
        if status_file.is_file():
            status = json.loads(status_file.read_text())
        elif metrics:
            status = {"status": "ok"}
        else:  # killed, or a launcher that lost it: nothing recorded either way
            status = {"status": "failed", "error": f"no {METRICS_FILE}: the job did not finish"}
        rows.append({"job": job_dir.name, "status": status["status"], "overrides": " ".join(overrides), **metrics, "error": status.get("error", "")})
    return rows


STAGES = ("val/", "test/", "train/")  # metric columns in this order, each group as the jobs wrote it
FIXED = ("job", "status", "overrides", "error")


def write_summary(sweep_dir: str | Path) -> list[Path]:
    """`summary.csv` (every override of each job) and `summary.md` (the overrides that differ
    between jobs, the shared ones above the table) in `sweep_dir`; returns their paths."""
    sweep_dir = Path(sweep_dir)
    rows = collect(sweep_dir)
    if not rows:
        return []
    keys = list(dict.fromkeys(k for row in rows for k in row if k not in FIXED))
    stage = lambda k: next((i for i, p in enumerate(STAGES) if k.startswith(p)), len(STAGES))  # noqa: E731
    columns = ["job", "status", "overrides", *sorted(keys, key=stage), "error"]
    csv_path, md_path = sweep_dir / "summary.csv", sweep_dir / "summary.md"
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "nan" if math.isnan(v) else f"{v:.4g}"
        return "" if v is None else " ".join(str(v).split()).replace("|", "\\|")  # one line per row

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
    """Hydra callback: at the end of a multirun, tabulate every job's status, overrides, metrics
    and error, then exit with status 1 if any job failed (so scripts and CI see it).

    Reads the files the jobs wrote (`.hydra/overrides.yaml`, `metrics.json`, `status.json`), so it
    works with any launcher, in-process or not.
    """

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        paths = write_summary(config.hydra.sweep.dir)
        if not paths:
            return
        log.info("Sweep summary: %s", ", ".join(str(p) for p in paths))
        rows = collect(config.hydra.sweep.dir)
        failed = [row["job"] for row in rows if row["status"] != "ok"]
        if failed:
            log.error("%d of %d jobs failed (job %s); their errors are in %s", len(failed), len(rows), ", ".join(failed), paths[1])
            sys.exit(1)
