"""Pieces every task shares: building the recurrent layer from the `model` config, the state
helpers for truncated BPTT, loading a task checkpoint safely, and the optimizer/schedule glue."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from torch import Tensor, nn

from rnnlab.utils.errors import UserError

State = Tensor | tuple[Tensor, ...]


def build_recurrent(model: dict[str, Any], input_size: int) -> nn.Module:
    """The recurrent layer a `configs/model/*.yaml` describes, fed `input_size` features per step.

    Args:
        model: the model config as a plain dict (`_target_`, `_partial_: true`, cell, sizes...).
        input_size: what the task feeds it (an embedding size, say): the task owns this size.
    Returns:
        A layer called as `out, state = rnn(x, state)`, x: (batch, time, input_size),
        out: (batch, time, rnn.output_size).
    """
    factory = instantiate(model)  # a functools.partial: the config holds everything but input_size
    try:
        return factory(input_size=input_size, batch_first=True, return_sequences=True, return_state=True)
    except (TypeError, ValueError) as e:
        shown = {k: v for k, v in model.items() if not k.startswith("_")}
        raise UserError(f"The model config {shown} does not build a {model.get('_target_')}: {e} Fix the model.* overrides.") from e


# The layers a checkpoint may name. A checkpoint's model config is data from a file: building
# whatever `_target_` it names (or a nested `_target_` Hydra would build recursively) would run
# arbitrary code, which weights_only loading exists to prevent.
TRUSTED_LAYERS = ("rnnlab.nn.Recurrent", "rnnlab.nn.TorchRecurrent")


def check_stored_model_config(model: Any, source: str) -> dict[str, Any]:
    """`model` if it names a trusted layer and holds only plain values; else a UserError."""
    if not isinstance(model, dict) or model.get("_target_") not in TRUSTED_LAYERS:
        target = model.get("_target_") if isinstance(model, dict) else model
        raise UserError(f"{source} names the layer {target!r}, not one of {TRUSTED_LAYERS}; refusing to build it.")
    nested = [k for k, v in model.items() if not (v is None or isinstance(v, (bool, int, float, str)))]
    if nested:
        raise UserError(f"{source}: the model config holds non-scalar values under {nested}; refusing to build it.")
    return model


def detach_state(state: State | None) -> State | None:
    """Cut the graph behind a carried state (truncated BPTT) without touching its values."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state.detach()
    return tuple(s.detach() for s in state)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A Lightning checkpoint loaded on the CPU with `weights_only=True` (no pickled code runs)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"ckpt_path={path}: no such checkpoint. Pass a .ckpt file from a run's checkpoints/ folder.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt file or not a checkpoint: torch raises several types
        raise UserError(f"ckpt_path={path} is not a loadable checkpoint ({type(e).__name__}: {e}).") from e


def build_optimization(module: nn.Module, optimizer: dict[str, Any], scheduler: dict[str, Any] | None, total_steps: float) -> Any:
    """What `configure_optimizers` returns, from two Hydra partial configs.

    Args:
        optimizer: partial of a torch optimizer class, called with the parameters.
        scheduler: None, or partial of a callable `(optimizer, total_steps) -> LRScheduler`
            (e.g. `rnnlab.utils.schedules.warmup_cosine`), stepped every optimizer step.
        total_steps: the Trainer's `estimated_stepping_batches`.
    """
    opt = instantiate(optimizer)(module.parameters())
    if scheduler is None:
        return opt
    if not math.isfinite(total_steps):
        raise UserError(
            "task.module.scheduler needs to know how many steps the run has: set trainer.max_steps or "
            "trainer.max_epochs, or turn the schedule off with task.module.scheduler=null."
        )
    sched = instantiate(scheduler)(opt, total_steps=int(total_steps))
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
