"""Training pipeline behind `train.py`: config → data, module, trainer → fit → test → metrics.

It names no task: `task.name` picks the task's classes from `rnnlab.tasks.TASKS`, and everything
task-specific comes through the task contract (`rnnlab.tasks.contract`). The one thing a config
cannot know, sizes that come from the data (charlm: the vocabulary), flows through one explicit
hand-off: `datamodule.setup()` then `datamodule.model_kwargs()`, passed as extra keyword
arguments to the task's module. The module gets plain values only (`rnnlab.entry.module_kwargs`).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from rnnlab.entry import build_callbacks, build_loggers, build_trainer, construct, datamodule_kwargs, module_kwargs, plain
from rnnlab.nn.threads import DEFAULT_THREADS, threads_for_model
from rnnlab.tasks import get_task
from rnnlab.tasks.common import checkpoint_task, load_checkpoint
from rnnlab.tasks.settings import layer_settings
from rnnlab.utils.callbacks import Throughput
from rnnlab.utils.checkpoint_io import AtomicCheckpointIO
from rnnlab.utils.errors import UserError, quiet_known_warnings
from rnnlab.utils.sweep import write_metrics

log = logging.getLogger(__name__)


def flat_hparams(cfg: DictConfig) -> dict[str, Any]:
    """The config as one flat dict of scalars, for TensorBoard's hparams table."""
    out: dict[str, Any] = {"task": cfg.task.name, "seed": cfg.get("seed")}
    if HydraConfig.initialized():
        out["model"] = HydraConfig.get().runtime.choices.get("model")

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if not str(k).startswith("_") or k == "_target_":
                    walk(f"{prefix}/{k}", v)
        elif isinstance(node, (bool, int, float, str)):
            out[prefix] = node
        else:
            out[prefix] = str(node)  # None, lists: shown as text

    sections = {"model": cfg.model, "data": cfg.task.data, "module": cfg.task.module, "trainer": cfg.trainer}
    for prefix, node in sections.items():
        walk(prefix, plain(node))
    return out


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit, then test the best checkpoint; returns the run's final metrics (also in metrics.json).
    See `fit_and_test`."""
    return fit_and_test(cfg)[0]


def fit_and_test(cfg: DictConfig) -> tuple[dict[str, float], tuple[str, str]]:
    """Fit, then test the best checkpoint; returns the run's final metrics (also in metrics.json)
    and the module's monitored (metric, mode).

    The task's monitored metric (charlm: `val/loss`) is the best value of the run, the one the
    best checkpoint has; `<metric>_last` is the last validation's. The task adds what follows from
    them (`derived_metrics`: charlm's val/bpc, val/ppl).

    Raises:
        UserError: a bad file, option or value; the message names it and says how to fix it.
    """
    quiet_known_warnings()
    check_ddp_launch(cfg)
    task = get_task(cfg.task.name)
    ckpt_path = cfg.get("ckpt_path")
    checkpoint = None
    if ckpt_path is not None:  # read up front: a bad file or a misfit is explained before any work
        checkpoint = load_checkpoint(ckpt_path)
        stored = checkpoint_task(checkpoint)
        if stored is not None and stored != task.name:
            raise UserError(f"ckpt_path={ckpt_path} holds a {stored} model; this run is task={task.name}. Resume it with task={stored}.")
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)

    datamodule = construct(task.datamodule, datamodule_kwargs(cfg), "task.data")
    datamodule.setup("fit")  # reads the data: the sizes the model needs exist from here on
    sizes = datamodule.model_kwargs()
    module = construct(task.module, {**module_kwargs(cfg), **sizes}, "task.module")
    if checkpoint is not None:
        check_checkpoint_fits(module, checkpoint, ckpt_path, sizes)
    check_sweep_direction(cfg, module.monitor)
    if cfg.trainer.get("accelerator") == "cpu":
        set_threads(cfg.get("threads", "auto"), module, getattr(datamodule, "batch_size", None), share=cpu_processes(cfg))

    extra = {} if cfg.trainer.get("plugins") else {"plugins": [AtomicCheckpointIO()]}  # a kill never leaves a torn last.ckpt
    callbacks = build_callbacks(cfg.get("callbacks"), module.monitor)
    if cfg.trainer.get("enable_checkpointing") is False:  # Lightning refuses checkpoint callbacks then: none is wanted
        callbacks = [cb for cb in callbacks if not isinstance(cb, ModelCheckpoint)]
    trainer: L.Trainer = build_trainer(cfg.trainer, callbacks=callbacks, logger=build_loggers(cfg.get("logger")) or False, **extra)
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    fit_seconds = time.perf_counter() - start

    metrics = final_metrics(trainer, fit_seconds, module.monitor[0], checkpoint)
    if cfg.get("test"):
        ckpt = trainer.checkpoint_callback
        best = ckpt.best_model_path if ckpt is not None and ckpt.best_model_path else None
        results = trainer.test(module, datamodule=datamodule, ckpt_path=best, weights_only=True, verbose=False)
        metrics.update({k: float(v) for k, v in results[0].items()})
    metrics.update(module.derived_metrics(metrics))

    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            # Keys outside the curves' names: an hparams metric is also written as a scalar at step 0.
            final = {f"hparams/{k.replace('/', '_')}": v for k, v in metrics.items() if math.isfinite(v)}
            logger.log_hyperparams(flat_hparams(cfg), final)
            logger.finalize("success")
    if OmegaConf.select(cfg, "paths.output_dir", throw_on_missing=False) and trainer.is_global_zero:
        write_metrics(cfg.paths.output_dir, metrics)
    log.info("final metrics: %s", ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
    return metrics, module.monitor


def check_sweep_direction(cfg: DictConfig, monitor: tuple[str, str]) -> None:
    """UserError when a sweeper that optimises the task's monitored metric (Optuna's `direction`)
    would go the wrong way: minimising an accuracy, maximising a loss."""
    if not HydraConfig.initialized():
        return
    direction = str(HydraConfig.get().sweeper.get("direction") or "")
    metric = cfg.get("optimized_metric") or monitor[0]
    if direction not in ("minimize", "maximize") or metric != monitor[0]:
        return
    want = "minimize" if monitor[1] == "min" else "maximize"
    if direction != want:
        raise UserError(
            f"hydra.sweeper.direction={direction}, but the metric it optimises, {metric}, is better when "
            f"{'lower' if monitor[1] == 'min' else 'higher'} (the task's monitor): set hydra.sweeper.direction={want}."
        )


def check_ddp_launch(cfg: DictConfig) -> None:
    """UserError for DDP inside a sweep that Lightning would have to launch itself: it starts ranks
    1..n-1 by running the command line again, and in a `-m` sweep that line is the whole sweep."""
    from rnnlab.utils.sweep import in_multirun

    trainer = cfg.trainer
    devices, nodes = trainer.get("devices"), trainer.get("num_nodes") or 1
    several = (devices == -1 or (isinstance(devices, int) and devices > 1) or nodes > 1) and "ddp" in str(trainer.get("strategy") or "")
    launched = int(os.environ.get("SLURM_NTASKS", "1")) > 1 or "RANK" in os.environ  # SLURM / torchrun started every rank
    if several and in_multirun() and not launched:
        raise UserError(
            f"trainer.strategy={trainer.strategy} with {devices} devices inside a -m sweep: Lightning would start the "
            f"extra ranks by running the sweep's command line again. Run DDP jobs one at a time (no -m), or sweep "
            f"on SLURM with hydra/launcher=slurm and hydra.launcher.tasks_per_node=<devices> (the scheduler starts "
            f"every rank), see the README's \"Scale out\"."
        )


def cpu_processes(cfg: DictConfig) -> int:
    """How many processes share this machine's cores with this one: a joblib sweep's n_jobs
    (hydra/launcher=joblib), times the ranks of a DDP run on the CPU (trainer=ddp_cpu)."""
    n = 1
    if HydraConfig.initialized():
        launcher = HydraConfig.get().launcher
        if "joblib" in str(launcher.get("_target_", "")).lower():
            n_jobs = int(launcher.get("n_jobs") or 1)
            n *= n_jobs if n_jobs > 0 else max(1, (os.cpu_count() or 1) + 1 + n_jobs)  # joblib: -1 is every core
    trainer = cfg.trainer
    if "ddp" in str(trainer.get("strategy") or "") and isinstance(trainer.get("devices"), int) and trainer.devices > 0:
        n *= trainer.devices
    return n


def set_threads(setting: Any, module: L.LightningModule, batch: int | None, share: int = 1) -> int:
    """Set torch's CPU thread count for this run and return it: `threads=auto` picks one thread where
    a step of the model's recurrent layer is small (rnnlab.nn.threads), else torch's count divided
    among the `share` processes that run side by side (a parallel sweep's jobs, DDP ranks: each
    taking every core would slow them all down many times over); a number sets it."""
    if setting == "auto":
        threads = DEFAULT_THREADS if batch is None else threads_for_model(module, batch)
        threads = max(1, threads // max(share, 1))
    elif isinstance(setting, int) and not isinstance(setting, bool) and setting > 0:
        threads = setting
    else:
        raise UserError(f"threads={setting!r}: expected auto (one thread where a recurrent step is small, else all) or a positive number of CPU threads, e.g. threads=2.")
    if threads != torch.get_num_threads():
        log.info("CPU threads: %d (threads=%s; torch's default is %d)", threads, setting, DEFAULT_THREADS)
        torch.set_num_threads(threads)
    return threads


def final_metrics(trainer: L.Trainer, fit_seconds: float, monitor: str, checkpoint: Mapping[str, Any] | None = None) -> dict[str, float]:
    """The run's best and last value of the monitored metric (the checkpoint callback's, else
    `monitor`), train/loss, epoch, step, time and throughput.

    The best comes from the ModelCheckpoint callback; a run resumed into another directory
    starts that callback afresh (Lightning reloads its scores only into the same directory), so
    where it saw no validation of its own, the best and last come from the resumed checkpoint.
    """
    cm = {k: float(v) for k, v in trainer.callback_metrics.items()}
    ckpt = trainer.checkpoint_callback
    monitor = ckpt.monitor if ckpt is not None and ckpt.monitor else monitor  # callbacks.model_checkpoint.monitor=... wins
    best = float(ckpt.best_model_score) if ckpt is not None and ckpt.best_model_score is not None else None
    last = cm.get(monitor)
    if checkpoint is not None and ckpt is not None and (best is None or last is None):
        stored = (checkpoint.get("callbacks") or {}).get(ckpt.state_key) or {}
        if best is None and stored.get("best_model_score") is not None:
            best = float(stored["best_model_score"])
        if last is None and stored.get("current_score") is not None:
            last = float(stored["current_score"])
    last = math.nan if last is None else last
    metrics = {
        monitor: last if best is None else best,
        f"{monitor}_last": last,
        "train/loss": cm.get("train/loss", math.nan),
        "epoch": float(trainer.current_epoch),
        "step": float(trainer.global_step),
        "train/time_sec": fit_seconds,
    }
    for cb in trainer.callbacks:
        if isinstance(cb, Throughput):
            metrics[cb.name] = cb.mean
    return metrics


def check_checkpoint_fits(module: L.LightningModule, checkpoint: Mapping[str, Any], path: str | Path, sizes: Mapping[str, Any]) -> None:
    """UserError unless `checkpoint` can resume into `module`: the same data-derived sizes, and
    weights of the same names and shapes; the error names the settings that differ."""
    stored = dict(checkpoint.get("hyper_parameters") or {})
    if "model" in stored:  # checkpoints from before the plain form spell the layer with _target_
        try:
            stored["model"] = layer_settings(stored["model"])
        except UserError:
            pass  # shown as stored
    overrides = _run_overrides(path)
    for key, value in sizes.items():
        if key in stored and stored[key] != value:
            raise UserError(
                f"ckpt_path={path} was trained on other data: its {key} ({_describe(stored[key])}) differs from the one this "
                f"run's data gives ({_describe(value)}). Resume it with the same task.data.path and task.data.split as the "
                f"run that wrote it. {overrides}"
            )
    own, theirs = module.state_dict(), checkpoint["state_dict"]
    misfit = sorted(k for k in own.keys() | theirs.keys() if k not in own or k not in theirs or own[k].shape != theirs[k].shape)
    if not misfit:
        return
    ours = _settings(dict(module.hparams), skip=set(sizes))
    theirs_settings = _settings(stored, skip=set(sizes))
    differ = [k for k in dict.fromkeys([*theirs_settings, *ours]) if theirs_settings.get(k) != ours.get(k)]
    if not differ:
        raise UserError(f"ckpt_path={path}: its weights do not fit this run's model (e.g. {misfit[0]}). Start a new run without ckpt_path.")
    was = ", ".join(f"{k}={theirs_settings.get(k, 'unset')}" for k in differ)
    now = ", ".join(f"{k}={ours.get(k, 'unset')}" for k in differ)
    raise UserError(
        f"ckpt_path={path} was trained with {was}, but this run has {now}: its weights do not fit this run's model. "
        f"To resume it, give the model.* and task.module.* overrides of the run that wrote it (or drop ckpt_path to "
        f"train a new model). {overrides}"
    )


def _settings(hparams: Mapping[str, Any], skip: set[str]) -> dict[str, Any]:
    """A module's stored arguments under the config keys they come from (model.*, task.module.*);
    the optimizer and schedule are left out: they may change on resume, the weights' shapes not."""
    out: dict[str, Any] = {}
    for key, value in hparams.items():
        if key in skip or key in ("optimizer", "scheduler"):
            continue
        if key == "model" and isinstance(value, Mapping):
            out.update({f"model.{k}": v for k, v in value.items()})
        else:
            out[f"task.module.{key}"] = value
    return out


def _run_overrides(ckpt_path: str | Path) -> str:
    """A sentence: where the overrides of the run that wrote `ckpt_path` are, and the ones among
    them that choose the model, the task or the data."""
    file = Path(ckpt_path).resolve().parent.parent / ".hydra" / "overrides.yaml"
    if not file.is_file():
        return "They are in that run directory's .hydra/overrides.yaml."
    shaping = [str(o) for o in OmegaConf.to_container(OmegaConf.load(file)) if str(o).lstrip("+~").startswith(("model", "task", "experiment"))]
    if not shaping:
        return f"{file} lists no model or task overrides: that run used the defaults."
    return f"{file} lists that run's: {' '.join(shaping)}"


def _describe(value: Any) -> str:
    return f"{len(value)} entries" if isinstance(value, (list, tuple, dict)) else repr(value)


def main(cfg: DictConfig) -> float | None:
    """What `train.py` runs (inside `rnnlab.entry.run`, which turns a bad input into exit status 2
    and removes a run directory that holds nothing but Hydra's config and log): train, and return
    the metric to optimise to a sweeper.

    A sweep job that fails records its error in the job's status.json and returns NaN, so the
    sweep goes on; the sweep's summary lists it and the sweep exits 1 (rnnlab.utils.sweep).
    """
    from rnnlab.utils.sweep import in_multirun, record_failure

    try:
        metrics, monitor = fit_and_test(cfg)
    except Exception as e:
        if not in_multirun():
            raise
        record_failure(OmegaConf.select(cfg, "paths.output_dir", throw_on_missing=False), e)
        return math.nan
    return metrics.get(cfg.get("optimized_metric") or monitor[0], math.nan)
