"""Plain settings for what a task module builds: its recurrent layer, optimizer and schedule.

A module receives and stores these as plain values (a name from a fixed table + keyword arguments),
never as import paths, so a checkpoint holds nothing that names code, and loading one needs no
allow-list: a name outside the table is an error, not an import.

    layer:     {"layer": "rnnlab", "cell": "lstm", "hidden_size": 256, "num_layers": 2, "dropout": 0.0}
    optimizer: {"name": "adam", "lr": 0.002}
    scheduler: {"name": "warmup_cosine", "warmup_steps": 200, "min_lr_ratio": 0.05}  (or None)

Configs may spell a choice the Hydra way (`_target_: torch.optim.Adam`, `_partial_: true`); the
`*_settings` functions read that spelling through the same tables and return the plain form.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any, Callable

import torch
from torch import nn

from rnnlab.nn import Recurrent, TorchRecurrent
from rnnlab.utils import schedules
from rnnlab.utils.errors import UserError

LAYERS: dict[str, type[nn.Module]] = {"rnnlab": Recurrent, "torch": TorchRecurrent}
OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
}
# `(optimizer, total_steps, **kwargs) -> LRScheduler`, stepped every optimizer step.
SCHEDULES: dict[str, Callable[..., torch.optim.lr_scheduler.LRScheduler]] = {
    "warmup_cosine": schedules.warmup_cosine,
    "constant": schedules.constant,
}
# The Hydra spelling of each name (`_target_`), as configs and older checkpoints write it.
_LAYER_TARGETS = {"rnnlab.nn.Recurrent": "rnnlab", "rnnlab.nn.TorchRecurrent": "torch"}
_OPTIMIZER_TARGETS = {f"torch.optim.{cls.__name__}": name for name, cls in OPTIMIZERS.items()}
_SCHEDULE_TARGETS = {f"rnnlab.utils.schedules.{fn.__name__}": name for name, fn in SCHEDULES.items()}
# Arguments of the layer that the task decides, not the config.
_TASK_OWNED = ("input_size", "batch_first", "return_sequences", "return_state")


def _is_plain(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    return isinstance(value, (list, tuple)) and all(v is None or isinstance(v, (bool, int, float, str)) for v in value)


def _plain(spec: Any, where: str, key: str, table: Mapping[str, Any], targets: Mapping[str, str]) -> dict[str, Any]:
    """`spec` as {key: <a name of table>, **plain kwargs}; reads `_target_` through `targets`."""
    example = f"{where}.{key}={next(iter(table))}"
    if not isinstance(spec, Mapping):
        raise UserError(f"{where}={spec!r}: give a mapping with `{key}` (one of {sorted(table)}) and its keyword arguments, e.g. {example}.")
    out = {str(k): v for k, v in spec.items() if k not in ("_target_", "_partial_")}
    target = spec.get("_target_")
    if target is not None:
        if target not in targets:
            raise UserError(
                f"{where}._target_={target!r} is not one rnnlab knows ({sorted(targets)}); "
                f"choose by name instead: {example} (one of {sorted(table)})."
            )
        out = {key: targets[target], **{k: v for k, v in out.items() if k != key}}
    if out.get(key) not in table:
        raise UserError(f"{where}.{key}={out.get(key)!r}: choose one of {sorted(table)}, e.g. {example}.")
    nested = [k for k, v in out.items() if not _is_plain(v)]
    if nested:
        raise UserError(f"{where}: the values under {nested} are not plain numbers, strings or lists of them; refusing to use them.")
    return out


def layer_settings(spec: Any, where: str = "model") -> dict[str, Any]:
    """The recurrent layer's plain settings: {"layer": "rnnlab" | "torch", "cell": ..., sizes, flags}."""
    out = _plain(spec, where, "layer", LAYERS, _LAYER_TARGETS)
    owned = [k for k in _TASK_OWNED if k in out]
    if owned:
        raise UserError(f"{where}: remove {owned}; the task sets them (input_size is its own embedding or feature size).")
    return out


def build_recurrent(spec: Mapping[str, Any], input_size: int, where: str = "model") -> nn.Module:
    """The recurrent layer that `spec` (see `layer_settings`) describes, fed `input_size` features.

    Returns:
        A layer called as `out, state = rnn(x, state)`, x: (batch, time, input_size),
        out: (batch, time, rnn.output_size).
    """
    settings = layer_settings(spec, where)
    kwargs = {k: v for k, v in settings.items() if k != "layer"}
    try:
        return LAYERS[settings["layer"]](input_size=input_size, batch_first=True, return_sequences=True, return_state=True, **kwargs)
    except (TypeError, ValueError) as e:
        reason = str(e).rstrip(".") + "."
        named = [k for k in settings if re.search(rf"\b{re.escape(k)}\b", reason)]  # the layer's message names the argument
        bad = ", ".join(f"{where}.{k}={settings[k]!r}" for k in named) or f"the {where}.* settings"
        raise UserError(f"{bad}: {reason} Fix it (the layer: {settings}; configs/model/ has working settings).") from e


def optimizer_settings(spec: Any, where: str = "task.module.optimizer") -> dict[str, Any]:
    """{"name": <one of OPTIMIZERS>, **kwargs}, checked by building it once on a dummy parameter."""
    out = _plain(spec, where, "name", OPTIMIZERS, _OPTIMIZER_TARGETS)
    lr = out.get("lr")
    if "lr" in out and (isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0):
        raise UserError(f"{where}.lr={lr!r}: the learning rate must be a positive finite number, e.g. {where}.lr=0.002.")
    try:
        build_optimizer(out, [nn.Parameter(torch.zeros(1))])
    except (TypeError, ValueError) as e:
        raise UserError(f"{where}={out}: torch.optim.{OPTIMIZERS[out['name']].__name__} refuses these arguments ({e}). Fix the {where}.* value it names.") from e
    return out


def scheduler_settings(spec: Any, where: str = "task.module.scheduler") -> dict[str, Any] | None:
    """None (no schedule) or {"name": <one of SCHEDULES>, **kwargs}, checked against its signature."""
    if spec is None:
        return None
    out = _plain(spec, where, "name", SCHEDULES, _SCHEDULE_TARGETS)
    fn = SCHEDULES[out["name"]]
    kwargs = {k: v for k, v in out.items() if k != "name"}
    try:
        inspect.signature(fn).bind(None, 1, **kwargs)
    except TypeError as e:
        accepted = [p for p in inspect.signature(fn).parameters if p not in ("optimizer", "total_steps")]
        raise UserError(f"{where}: {out['name']} takes {accepted or 'no arguments'}, not {sorted(kwargs)} ({e}).") from e
    return out


def build_optimizer(settings: Mapping[str, Any], params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    """The optimizer `settings` names (see `optimizer_settings`), over `params`."""
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items() if k != "name"}  # betas=(0.9, 0.99)
    params = list(params)
    if settings["name"] in ("adam", "adamw") and "fused" not in kwargs and not (kwargs.get("foreach") or kwargs.get("differentiable")):
        # torch's default Adam on CPU loops over the parameters one tensor op at a time; the fused
        # kernel does the same arithmetic in one pass (a sentiment BiLSTM's step: 22 ms -> 3 ms).
        kwargs["fused"] = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    return OPTIMIZERS[settings["name"]](params, **kwargs)


def build_optimization(params: Iterable[nn.Parameter], optimizer: Mapping[str, Any], scheduler: Mapping[str, Any] | None, total_steps: float) -> Any:
    """What `configure_optimizers` returns: the optimizer, and the schedule stepped every step.

    Args:
        optimizer, scheduler: plain settings (`optimizer_settings`, `scheduler_settings`).
        total_steps: the Trainer's `estimated_stepping_batches` (the schedule's length).
    """
    opt = build_optimizer(optimizer, params)
    if scheduler is None:
        return opt
    if not math.isfinite(total_steps):
        raise UserError(
            "task.module.scheduler needs to know how many steps the run has: set trainer.max_steps or "
            "trainer.max_epochs, or turn the schedule off with task.module.scheduler=null."
        )
    kwargs = {k: v for k, v in scheduler.items() if k != "name"}
    sched = SCHEDULES[scheduler["name"]](opt, total_steps=int(total_steps), **kwargs)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
