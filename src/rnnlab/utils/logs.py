"""Console logging under Hydra: every line once, in Hydra's format, and in the run's log file."""

from __future__ import annotations

import logging
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


class LightningLogsOnce(Callback):
    """Hydra callback (configs/hydra/default.yaml): `route_lightning_logs` at the start of each job,
    when Hydra's handlers (console, <run>/<entry point>.log) are in place."""

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        route_lightning_logs()
