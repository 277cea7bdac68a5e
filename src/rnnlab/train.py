"""Training pipeline behind `train.py`: config → data, module, trainer → fit → test → metrics.

Every object comes from `hydra.utils.instantiate` on its config group. The one thing a config
cannot know, sizes that come from the data (charlm: the vocabulary), flows through one explicit
hand-off: `datamodule.setup()` then `datamodule.model_kwargs()`, passed as extra keyword
arguments to the task's module (see `rnnlab.tasks`).
"""

from __future__ import annotations

import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from rnnlab.utils.callbacks import Throughput
from rnnlab.utils.errors import UserError, build, quiet_known_warnings
from rnnlab.utils.sweep import write_metrics

log = logging.getLogger(__name__)


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Instantiate every entry of a dict-of-configs group (callbacks, logger); None → []."""
    if not group:
        return []
    return [instantiate(node) for node in group.values() if isinstance(node, DictConfig) and "_target_" in node]


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
        walk(prefix, OmegaConf.to_container(node, resolve=True))
    return out


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit, then test the best checkpoint; returns the run's final metrics (also in metrics.json).

    `val/loss` (and bpc, ppl) is the best validation loss of the run, the one the best checkpoint
    has; `val/loss_last` is the last validation's.

    Raises:
        UserError: a bad file, option or value; the message names it and says how to fix it.
    """
    quiet_known_warnings()
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path is not None and not Path(ckpt_path).is_file():
        raise UserError(f"ckpt_path={ckpt_path}: no such checkpoint. To resume, pass a run's checkpoints/last.ckpt.")
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)

    datamodule = build(cfg.task.data, _convert_="all")
    datamodule.setup("fit")  # reads the data: the sizes the model needs exist from here on
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    module = build(cfg.task.module, model=model_cfg, **datamodule.model_kwargs(), _recursive_=False, _convert_="all")

    callbacks = instantiate_group(cfg.get("callbacks"))
    loggers = instantiate_group(cfg.get("logger"))
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)

    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    fit_seconds = time.perf_counter() - start

    metrics = final_metrics(trainer, fit_seconds)
    if cfg.get("test"):
        ckpt = trainer.checkpoint_callback
        best = ckpt.best_model_path if ckpt is not None and ckpt.best_model_path else None
        results = trainer.test(module, datamodule=datamodule, ckpt_path=best, weights_only=True, verbose=False)
        metrics.update({k: float(v) for k, v in results[0].items()})

    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            # Keys outside the curves' names: an hparams metric is also written as a scalar at step 0.
            final = {f"hparams/{k.replace('/', '_')}": v for k, v in metrics.items() if math.isfinite(v)}
            logger.log_hyperparams(flat_hparams(cfg), final)
            logger.finalize("success")
    if OmegaConf.select(cfg, "paths.output_dir", throw_on_missing=False):
        write_metrics(cfg.paths.output_dir, metrics)
    log.info("final metrics: %s", ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
    return metrics


def final_metrics(trainer: L.Trainer, fit_seconds: float) -> dict[str, float]:
    cm = {k: float(v) for k, v in trainer.callback_metrics.items()}
    ckpt = trainer.checkpoint_callback
    best = float(ckpt.best_model_score) if ckpt is not None and ckpt.best_model_score is not None else cm.get("val/loss", math.nan)
    metrics = {
        "val/loss": best,
        "val/bpc": best / math.log(2),
        "val/ppl": math.exp(min(best, 700.0)),
        "val/loss_last": cm.get("val/loss", math.nan),
        "train/loss": cm.get("train/loss", math.nan),
        "epoch": float(trainer.current_epoch),
        "step": float(trainer.global_step),
        "train/time_sec": fit_seconds,
    }
    for cb in trainer.callbacks:
        if isinstance(cb, Throughput):
            metrics[cb.name] = cb.mean
    return metrics


def main(cfg: DictConfig) -> float | None:
    """What `train.py` runs: train, print a bad-input message and exit 2, or return the metric to optimise."""
    try:
        metrics = train(cfg)
    except UserError as e:
        print(f"\nError: {e}", file=sys.stderr)
        sys.exit(2)
    name = cfg.get("optimized_metric")
    return metrics.get(name) if name else None
