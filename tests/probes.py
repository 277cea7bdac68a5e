"""Callbacks that tests inject into train.py runs (`+callbacks.<name>._target_=probes.<Class>`, with
tests/ on PYTHONPATH) to crash, poison or inspect a run at a chosen step."""

from __future__ import annotations

import hashlib
import json
import os
import signal
from pathlib import Path
from typing import Any

import lightning as L
import torch


class KillAt(L.Callback):
    """SIGKILL this process at the end of training step `step` (before that step's checkpoint)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class KillInSave(L.Callback):
    """Make the `nth` checkpoint save write half its bytes, then SIGKILL the process mid-write."""

    def __init__(self, nth: int) -> None:
        self.nth, self.saves = nth, 0

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        real = torch.save

        def save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
            if not (isinstance(obj, dict) and "state_dict" in obj):
                return real(obj, f, *args, **kwargs)
            self.saves += 1
            if self.saves < self.nth:
                return real(obj, f, *args, **kwargs)
            import io

            buf = io.BytesIO()
            real(obj, buf)
            data = buf.getvalue()
            f.write(data[: len(data) // 2])
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)

        torch.save = save


class NanGradAt(L.Callback):
    """Turn one gradient NaN after the backward pass of training step `step` (0-based global step)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_after_backward(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step == self.step:
            next(p for p in pl_module.parameters() if p.grad is not None).grad.view(-1)[0] = float("nan")


class WeightsProbe(L.Callback):
    """At the end of fitting, write this rank's weight digest, its training batches (the rows of
    each x) and its last val/loss to `<out>/rank<r>.json` (outside the run directory: the probe is
    not the run's output)."""

    def __init__(self, out: str) -> None:
        self.out = Path(out)
        self.batches: list[list[int]] = []

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        x = batch.x if hasattr(batch, "x") else batch[0]  # sentiment's Batch(lengths, x, y); charlm's (x, y, reset)
        self.batches.append(x.tolist())

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        digest = hashlib.sha256()
        for name, tensor in sorted(pl_module.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        self.out.mkdir(parents=True, exist_ok=True)
        report = {"rank": trainer.global_rank, "world": trainer.world_size, "weights": digest.hexdigest(), "batches": self.batches,
                  "val_loss": float(trainer.callback_metrics.get("val/loss", float("nan")))}
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(report))
