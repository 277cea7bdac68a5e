"""Research diagnostics as Lightning callbacks (`callbacks=diagnostics`)."""

from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from rnnlab.nn.probe import hidden_grad_norms, largest_singular_values

log = logging.getLogger(__name__)


class GradientThroughTime(L.Callback):
    """At each validation end, on one fixed validation batch: ‖∂L/∂h_t‖ for every step t, with L the
    loss of the last step only (rnnlab.nn.probe), and σ_max of each layer's W.

    Logged: `grad/first_over_last` (‖∂L/∂h_1‖ / ‖∂L/∂h_T‖: far below 1 is a vanishing gradient, above
    1 an exploding one), `grad/sigma_max/<layer>`, and the curve over t as a log-scale figure
    (`grad/norm_through_time`, TensorBoard's Images tab). `history` keeps (step, norms) of each, and
    the run directory's `grad_through_time.json` the same with σ_max ({"steps": [...], "norms":
    [[‖∂L/∂h_1‖, ...], ...], "sigma_max": [{layer: σ}, ...]}), rewritten whole at each validation, for
    scripts/plot_gradients.py.

    The task module says what to differentiate: `gradient_probe(batch) -> (layer, x, last_loss)`
    (charlm has one); a task without it, or a layer other than a one-direction rnnlab Recurrent, is
    reported once and skipped.

    Args:
        batch_index: which validation batch to use (the same one every time).
        save: write grad_through_time.json into the run directory (trainer.default_root_dir).
    """

    FILE = "grad_through_time.json"

    def __init__(self, batch_index: int = 0, save: bool = True) -> None:
        self.batch_index = batch_index
        self.save = save
        self.batch: Any = None
        self.history: list[tuple[int, torch.Tensor]] = []
        self.sigmas: list[dict[str, float]] = []
        self._skipped = False

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        dm = trainer.datamodule
        if dm is None or not hasattr(pl_module, "gradient_probe"):
            self._skip(f"task {getattr(pl_module, 'name', type(pl_module).__name__)} has no gradient_probe")
            return
        for i, batch in enumerate(dm.val_dataloader()):
            if i == self.batch_index:
                self.batch = batch
                break

    def _skip(self, why: str) -> None:
        if not self._skipped:
            log.warning("GradientThroughTime: %s; nothing is measured.", why)
        self._skipped = True

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.batch is None or trainer.sanity_checking or not trainer.is_global_zero:
            return
        batch = pl_module.transfer_batch_to_device(self.batch, pl_module.device, 0)
        with torch.inference_mode(False):
            try:
                layer, x, last_loss = pl_module.gradient_probe(batch)
                norms = hidden_grad_norms(layer, x, last_loss).cpu()
            except ValueError as e:
                self._skip(str(e))
                self.batch = None
                return
        step = trainer.global_step
        sigmas = largest_singular_values(layer)
        self.history.append((step, norms))
        self.sigmas.append(sigmas)
        if self.save:
            self._write(Path(trainer.default_root_dir) / self.FILE)
        scalars = {"grad/first_over_last": float(norms[0] / norms[-1])}
        scalars.update({f"grad/sigma_max/{k}": v for k, v in sigmas.items()})
        for logger in trainer.loggers:
            logger.log_metrics(scalars, step=step)
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image("grad/norm_through_time", norm_figure(norms, step), step, dataformats="HWC")


    def _write(self, path: Path) -> None:
        record = {"steps": [s for s, _ in self.history], "norms": [n.tolist() for _, n in self.history], "sigma_max": self.sigmas}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(record) + "\n", encoding="utf-8")
        os.replace(tmp, path)  # never a half-written file, even if the run is killed here


def norm_figure(norms: torch.Tensor, step: int) -> Any:
    """‖∂L/∂h_t‖ over t on a log scale, as an (H, W, 3) uint8 array."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(5, 3), dpi=100)
    ax.semilogy(range(1, len(norms) + 1), norms.numpy())
    ax.set_xlabel("step t (the loss is at the last one)")
    ax.set_ylabel("‖∂L/∂h_t‖")
    ax.set_title(f"gradient through time, training step {step}")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="raw")
    w, h = fig.canvas.get_width_height()
    plt.close(fig)
    return np.frombuffer(buf.getvalue(), dtype=np.uint8).reshape(h, w, 4)[..., :3].copy()
