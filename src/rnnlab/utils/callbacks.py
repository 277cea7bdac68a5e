"""Lightning callbacks shared by tasks."""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch


class Throughput(L.Callback):
    """Logs input tokens per second of training as `name` (None: train/<the module's unit>_per_sec,
    charlm's train/chars_per_sec).

    Counts `batch[0].numel()` per training batch (of a tuple of batches, the first one's: the data
    goes by once per epoch whatever the orders) and the wall time spent inside training batches
    (forward, backward, optimizer step; validation and checkpointing excluded). Emits the rate
    over the batches since the last emission, at Lightning's logging steps only, so it costs
    nothing in between. `tokens` / `seconds` hold the totals of the run for a final average.
    """

    def __init__(self, name: str | None = None) -> None:
        self.name = name
        self.tokens = 0
        self.seconds = 0.0
        self._window_tokens = 0
        self._window_seconds = 0.0
        self._t0 = 0.0

    def _sync(self, trainer: L.Trainer) -> None:
        if trainer.strategy.root_device.type == "cuda":  # kernels run async; time what they did
            torch.cuda.synchronize(trainer.strategy.root_device)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.name is None:
            self.name = f"train/{getattr(pl_module, 'unit', 'tokens')}_per_sec"

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        emit = trainer.log_every_n_steps > 0 and trainer.global_step % trainer.log_every_n_steps == 0
        if emit:
            self._sync(trainer)
        dt = time.perf_counter() - self._t0
        first = batch[0] if isinstance(batch[0], torch.Tensor) else batch[0][0]  # a tuple of batches (one per order): the first's
        n = first.numel()
        self.tokens += n
        self.seconds += dt
        self._window_tokens += n
        self._window_seconds += dt
        if emit and self._window_seconds > 0:
            pl_module.log(self.name, self._window_tokens / self._window_seconds, on_step=True, on_epoch=False)
            self._window_tokens, self._window_seconds = 0, 0.0

    @property
    def mean(self) -> float:
        """Tokens per second over the whole run so far."""
        return self.tokens / self.seconds if self.seconds > 0 else float("nan")


class StepSeed(L.Callback):
    """Seeds torch's RNG before every training batch from (seed, epoch, batch index, rank), so the
    randomness of a step (dropout masks, teacher forcing draws) depends on where training is, not
    on how much randomness came before it: a run resumed in mid-epoch draws what the uninterrupted
    run drew, and every DDP rank draws its own.

    Args:
        seed: the run's seed; None: no seeding (the run is not reproducible anyway).
    """

    def __init__(self, seed: int | None) -> None:
        self.seed = seed

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if self.seed is not None:
            torch.manual_seed(hash((self.seed, trainer.current_epoch, batch_idx, trainer.global_rank)) % (1 << 62))
