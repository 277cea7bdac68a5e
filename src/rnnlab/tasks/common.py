"""Pieces every task shares: the base of a task module (checkpoint round trip, optimizer from plain
settings), loading a checkpoint safely, and the state helpers for truncated BPTT. No Hydra here:
a task module is built from plain values, in a notebook as in train.py."""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger
import torch
from torch import Tensor, nn

from rnnlab.tasks.settings import build_optimization
from rnnlab.utils.errors import TrainingDiverged, UserError

State = Tensor | tuple[Tensor, ...]
M = TypeVar("M", bound="TaskModuleBase")

TASK_KEY = "rnnlab_task"  # top-level checkpoint entry: the task's name in rnnlab.tasks.TASKS


def detach_state(state: State | None) -> State | None:
    """Cut the graph behind a carried state (truncated BPTT) without touching its values."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state.detach()
    return tuple(s.detach() for s in state)


def _torch_reason(error: Exception) -> str:
    """The useful part of torch.load's error: its advice to retry with weights_only=False (which
    would let the file run code) and its pointers to the docs are dropped."""
    kept = []
    for line in str(error).splitlines():
        line = line.split("WeightsUnpickler error:", 1)[-1].strip()
        if line and not re.search(r"weights.only|torch\.load|documentation|file an issue", line, re.IGNORECASE):
            kept.append(line)
    text = " ".join(kept)
    first = re.split(r"(?<=\.)\s", text, maxsplit=1)[0] if text else ""
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A Lightning checkpoint loaded on the CPU with `weights_only=True` (no pickled code runs)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"ckpt_path={path}: no such checkpoint. Pass a .ckpt file from a run's checkpoints/ folder.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt, truncated, or a pickle that holds code: torch raises several types
        raise UserError(
            f"ckpt_path={path} is not a checkpoint rnnlab can read ({_torch_reason(e)}). Pass a .ckpt file that "
            f"train.py wrote (a run's checkpoints/best.ckpt or last.ckpt); if it is one, the file is damaged "
            f"(an interrupted copy or save): take another checkpoint of the run."
        ) from e
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise UserError(f"ckpt_path={path} is a torch file but not a training checkpoint (it has no state_dict). Pass a run's checkpoints/best.ckpt or last.ckpt.")
    return checkpoint


def checkpoint_task(checkpoint: Mapping[str, Any]) -> str | None:
    """The name of the task a checkpoint was trained on (None: written before checkpoints said)."""
    name = checkpoint.get(TASK_KEY)
    return name if isinstance(name, str) else None


class TaskModuleBase(L.LightningModule):
    """What every task module shares: its name in checkpoints, `from_checkpoint`, the optimizer, and
    gradient clipping that logs `train/grad_norm`.

    Subclasses set `name`, `monitor` and `metrics`, store their plain constructor arguments with
    `save_hyperparameters` (including `optimizer` and `scheduler` settings, see
    `rnnlab.tasks.settings`), and implement the rest of `rnnlab.tasks.contract.TaskModule`.
    """

    name: ClassVar[str]
    monitor: ClassVar[tuple[str, str]] = ("val/loss", "min")
    metrics: ClassVar[tuple[str, ...]] = ("loss",)

    def configure_optimizers(self) -> Any:
        return build_optimization(self.parameters(), self.hparams.optimizer, self.hparams.scheduler, self.trainer.estimated_stepping_batches)

    def configure_gradient_clipping(self, optimizer: Any, gradient_clip_val: float | None = None, gradient_clip_algorithm: str | None = None) -> None:
        # Clip by norm ourselves: clip_grad_norm_ returns the pre-clip norm, so logging it is free.
        if gradient_clip_algorithm is not None and gradient_clip_algorithm != "norm":
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
            return
        norm = nn.utils.clip_grad_norm_(self.parameters(), gradient_clip_val or math.inf)
        # Before the optimizer step: a NaN/inf gradient stops the run with the weights still finite,
        # so no checkpoint is ever written from them (a per-step check: one device sync on a GPU).
        if not torch.isfinite(norm):
            raise TrainingDiverged(self._divergence_message(norm))
        self.log("train/grad_norm", norm, on_step=True, on_epoch=False)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if isinstance(loss, Tensor):  # kept as a tensor: reading it every step would sync a GPU
            self._last_loss = (self.global_step, loss.detach())

    def _divergence_message(self, norm: Tensor) -> str:
        last = getattr(self, "_last_loss", None)
        if last is not None and torch.isfinite(last[1]):
            before = f"the last finite training loss was {float(last[1]):.4g}, at step {last[0]}"
        else:
            before = "no earlier step had a finite loss"
        ckpt = self.trainer.checkpoint_callback if self._trainer is not None else None
        kept = f" {ckpt.dirpath}/last.ckpt holds the last checkpoint written before it, untouched." if ckpt is not None and ckpt.dirpath else ""
        return (
            f"Training diverged at step {self.global_step + 1} (epoch {self.current_epoch}): the gradient norm is "
            f"{float(norm)} (the loss or its gradient is NaN or infinite); {before}. The run stopped before this step "
            f"changed any weight.{kept} Lower the learning rate (task.module.optimizer.lr), clip harder "
            f"(trainer.gradient_clip_val), or resume from that checkpoint with ckpt_path= and a lower rate."
        )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[TASK_KEY] = self.name  # so predict.py / eval.py find the task from the file alone

    def derived_metrics(self, metrics: Mapping[str, float]) -> dict[str, float]:
        return {}

    def gather_over_ranks(self, obj: Any) -> list[Any]:
        """[rank 0's obj, rank 1's, ...] under DDP, where each rank evaluated its share of a split
        (torch.distributed.all_gather_object: plain Python values); [obj] in one process."""
        if self._trainer is None or self.trainer.world_size == 1 or not torch.distributed.is_initialized():
            return [obj]
        out: list[Any] = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(out, obj)
        return out

    def sum_over_ranks(self, *values: float) -> list[float]:
        """Each value summed over the DDP ranks (as is in one process)."""
        parts = self.gather_over_ranks(values)
        return [sum(p[i] for p in parts) for i in range(len(values))]

    @classmethod
    def from_checkpoint(cls: type[M], path: str | Path, *, checkpoint: Mapping[str, Any] | None = None) -> M:
        """The module stored in `path` (or the already loaded `checkpoint` of it), on the CPU in eval
        mode. Built from the checkpoint's plain hyper-parameters; loaded with weights_only=True."""
        checkpoint = load_checkpoint(path) if checkpoint is None else checkpoint
        stored = checkpoint_task(checkpoint)
        if stored is not None and stored != cls.name:
            raise UserError(f"ckpt_path={path} holds a {stored} model, not a {cls.name} one: pass task={stored}.")
        hparams = dict(checkpoint.get("hyper_parameters") or {})
        try:
            inspect.signature(cls).bind(**hparams)
        except TypeError as e:  # arguments this class does not take: another task's, or none at all
            raise UserError(f"ckpt_path={path} is not a {cls.name} checkpoint: its stored arguments do not fit ({e}).") from e
        module = cls(**hparams)  # checks every value (plain settings from fixed tables only)
        module.load_state_dict(checkpoint["state_dict"])
        return module.eval()


class StagedEvaluation:
    """Validation and test as one loop per stage, for a task module that accumulates its metrics
    itself: it defines `_eval_start()`, `_eval_step(batch, stage)` and `_eval_end(stage)`, and gets
    Lightning's six hooks here. `_reporting()` says whether this validation draws its TensorBoard
    report: while fitting (not eval.py, not the sanity check), with a TensorBoard logger."""

    def on_validation_epoch_start(self) -> None:
        self._eval_start()

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._eval_end("val")

    def on_test_epoch_start(self) -> None:
        self._eval_start()

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._eval_end("test")

    def _tensorboard(self) -> list[TensorBoardLogger]:
        return [lg for lg in self.loggers if isinstance(lg, TensorBoardLogger)]

    def _reporting(self) -> bool:
        trainer = self._trainer
        return trainer is not None and trainer.state.fn == "fit" and not trainer.sanity_checking and bool(self._tensorboard())


def markdown_escape(text: str) -> str:
    """`text` shown as is by a Markdown renderer: '<unk>' would be dropped as an HTML tag, '|' would
    end a table cell, and '*', '_', '`', '[' would start formatting."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return re.sub(r"([\\|*_`\[\]])", r"\\\1", text)
