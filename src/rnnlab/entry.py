"""What the entry points share: the only code that reads Hydra configs and calls `instantiate`.

- `run(work, cfg)`: the one place a bad input (UserError) becomes one paragraph on stderr and exit
  status 2, for train.py, eval.py, predict.py and sample.py alike.
- `task_objects`: a task's data module and module built from `task.*` / `model`, as plain values
  (the task code never sees a DictConfig).
- `build_trainer`, `build_callbacks`, `build`: Lightning objects from their config groups, with the
  task's monitored metric filled into the callbacks that leave `monitor: null`.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from rnnlab.utils.errors import UserError

T = TypeVar("T")


def run(work: Callable[[DictConfig], T], cfg: DictConfig, run_dir: str | Path | None = None) -> T:
    """`work(cfg)`; a bad input prints its message (no traceback) and exits with status 2.

    Args:
        run_dir: the run's own directory (Hydra's output dir), removed on failure if it holds
            nothing but what Hydra wrote at the start. None for entry points that write nothing.
    """
    try:
        return work(cfg)
    except (UserError, MissingMandatoryValue) as e:
        from rnnlab.utils.sweep import remove_unused_run_dir

        remove_unused_run_dir(run_dir)
        if isinstance(e, MissingMandatoryValue):  # a `???` left in the config
            key = e.full_key or "a value"
            e = UserError(f"{key} is missing: give it on the command line ({key}=...).")
        print(f"\nError: {e}", file=sys.stderr)
        sys.exit(2)


def required(cfg: DictConfig, key: str, example: str) -> Any:
    """`cfg[key]`, or a UserError that shows how to pass it (`example`: a whole command)."""
    if OmegaConf.is_missing(cfg, key) or cfg.get(key) is None:
        raise UserError(f"{key} is missing: pass it on the command line, e.g. `{example}`.")
    return cfg[key]


def plain(node: Any) -> Any:
    """A config node as plain Python values (interpolations resolved); None stays None."""
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def construct(cls: type[T], kwargs: dict[str, Any], where: str) -> T:
    """`cls(**kwargs)`, where a keyword `cls` does not take is a UserError naming `where.<key>`."""
    params = inspect.signature(cls).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            known = [p for p in params if p not in ("self",)]
            raise UserError(f"{', '.join(f'{where}.{k}' for k in unknown)}: {cls.__name__} takes no such argument; it takes {known}.")
    return cls(**kwargs)


def build(config: Any, **kwargs: Any) -> Any:
    """`hydra.utils.instantiate`, except that a UserError raised by the object's constructor comes
    out as itself (Hydra wraps it in an InstantiationException, which would bury the message)."""
    try:
        return instantiate(config, **kwargs)
    except InstantiationException as e:
        if isinstance(e.__cause__, UserError):
            raise e.__cause__ from None
        raise


def build_trainer(cfg: DictConfig, **kwargs: Any) -> Any:
    """The Lightning Trainer of the `trainer` group; no GPU for trainer=gpu is a UserError."""
    import torch

    accelerator = cfg.get("accelerator")
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        build_note = "this torch is a CPU-only build" if torch.version.cuda is None else f"torch {torch.__version__} sees no CUDA device"
        raise UserError(
            f"trainer.accelerator={accelerator} (trainer=gpu): no GPU was found ({build_note}). Train on the CPU with "
            f"trainer=cpu, or on a GPU machine install a CUDA build of torch first (RNNLAB_TORCH=system bash setup.sh)."
        )
    try:
        return instantiate(cfg, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        if type(cause).__name__ == "MisconfigurationException":  # Lightning's word for a bad Trainer argument
            raise UserError(f"The trainer.* settings do not make a Trainer: {cause}") from e
        raise


def build_callbacks(group: DictConfig | None, monitor: tuple[str, str]) -> list[Any]:
    """Every callback of the `callbacks` group; one with `monitor: null` monitors the task's metric.

    Args:
        monitor: the task module's `(metric, mode)`, e.g. ("val/loss", "min").
    """
    out = []
    for key, node in (group or {}).items():
        if not (isinstance(node, DictConfig) and "_target_" in node):
            continue
        kwargs = {}
        if "monitor" in node and node.monitor is None:
            kwargs = {"monitor": monitor[0], "mode": monitor[1]}
        elif "mode" in node and node.mode is None:
            raise UserError(f"callbacks.{key}.monitor={node.monitor}: also say whether lower or higher is better, callbacks.{key}.mode=min or max.")
        out.append(build(node, **kwargs))
    return out


def build_loggers(group: DictConfig | None) -> list[Any]:
    """Every logger of the `logger` group (none: [])."""
    return [build(node) for node in (group or {}).values() if isinstance(node, DictConfig) and "_target_" in node]


def datamodule_kwargs(cfg: DictConfig) -> dict[str, Any]:
    """`task.data` as the data module's keyword arguments."""
    return {k: v for k, v in plain(cfg.task.data).items() if not k.startswith("_")}


def module_kwargs(cfg: DictConfig) -> dict[str, Any]:
    """`task.module` + `model` as the task module's keyword arguments (plain values; the module
    checks and normalises the layer, optimizer and scheduler settings by their fixed tables)."""
    kwargs = {k: v for k, v in plain(cfg.task.module).items() if not k.startswith("_")}
    return {**kwargs, "model": plain(cfg.model)}
