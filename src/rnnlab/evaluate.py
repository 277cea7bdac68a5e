"""Evaluation pipeline behind `eval.py`: a checkpoint's val/* and test/* metrics on its task's data.

The module comes from the checkpoint (`rnnlab.tasks.load_module`, weights_only), and the data
module gets what the model fixes (`module.datamodule_kwargs()`: charlm's vocabulary), so the data
is encoded the way the model was trained; the rest of the data config (path, split, batch sizes)
comes from `task.data`. No task is named here.
"""

from __future__ import annotations

import lightning as L
from omegaconf import DictConfig, OmegaConf

from rnnlab.entry import build_trainer, construct, datamodule_kwargs, required
from rnnlab.tasks import get_task, load_module
from rnnlab.utils.errors import quiet_known_warnings
from rnnlab.utils.sweep import write_metrics


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Validate and test `cfg.ckpt_path`; returns the task's val/* and test/* metrics."""
    quiet_known_warnings()
    ckpt_path = required(cfg, "ckpt_path", "python eval.py ckpt_path=outputs/<task>/runs/<time>/checkpoints/best.ckpt")
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed)
    module = load_module(ckpt_path, expected=cfg.task.name)
    task = get_task(module.name)
    datamodule = construct(task.datamodule, {**datamodule_kwargs(cfg), **module.datamodule_kwargs()}, "task.data")
    trainer: L.Trainer = build_trainer(cfg.trainer, logger=False, enable_checkpointing=False)
    metrics: dict[str, float] = {}
    for run in (trainer.validate, trainer.test):
        for result in run(module, datamodule=datamodule, verbose=False):
            metrics.update({k: float(v) for k, v in result.items()})
    metrics.update(module.derived_metrics(metrics))
    if OmegaConf.select(cfg, "paths.output_dir", throw_on_missing=False):
        write_metrics(cfg.paths.output_dir, metrics)
    print("\n".join(f"{k}: {v:.4f}" for k, v in sorted(metrics.items())))
    return metrics
