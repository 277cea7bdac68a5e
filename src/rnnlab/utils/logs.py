"""Console logging under Hydra: every line once, in Hydra's format, and in the run's log file."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


def route_lightning_logs() -> None:
    """Leave Lightning's log lines to the root logger's handlers alone.

    Importing `lightning` adds a console handler ("INFO: ...") to the `lightning` logger whatever
    is configured, and the logger also propagates to the root, where Hydra's handlers print the same
    line again and write it to the run's log file. Once the root has handlers, Lightning's own one
    is dropped: each line (the model summary included) then shows once and still reaches the file.
    """
    import lightning  # noqa: F401  (its import adds the handler; it must exist before it can go)

    if not logging.getLogger().handlers:
        return  # nothing else would print Lightning's lines
    logger = logging.getLogger("lightning")
    for handler in list(logger.handlers):
        if type(handler) is logging.StreamHandler:  # the console one, not a file a user attached
            logger.removeHandler(handler)


def launched_as_rank_zero() -> bool:
    """Whether this process is rank 0 (or alone) as its launcher set it: torchrun's RANK, SLURM's
    SLURM_PROCID in a job of several tasks, Lightning's NODE_RANK / LOCAL_RANK for the ranks it starts."""
    if "RANK" in os.environ:
        return int(os.environ["RANK"]) == 0
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in os.environ:
        return int(os.environ["SLURM_PROCID"]) == 0
    return int(os.environ.get("NODE_RANK", "0")) == 0 and int(os.environ.get("LOCAL_RANK", "0")) == 0


def drop_log_file_off_rank_zero() -> bool:
    """On a DDP rank other than 0, stop writing the run's log file and remove the one Hydra just
    opened for this rank (rank 0's log is the run's); returns whether it did. The console stays."""
    if launched_as_rank_zero():
        return False
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler):
            root.removeHandler(handler)
            handler.close()
            path = Path(handler.baseFilename)
            if path.is_file() and path.stat().st_size == 0:
                path.unlink()
    return True


class LightningLogsOnce(Callback):
    """Hydra callback (configs/hydra/default.yaml): `route_lightning_logs` at the start of each job,
    when Hydra's handlers (console, <run>/<entry point>.log) are in place; a DDP rank other than 0
    writes no log file (`drop_log_file_off_rank_zero`)."""

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        drop_log_file_off_rank_zero()
        route_lightning_logs()
