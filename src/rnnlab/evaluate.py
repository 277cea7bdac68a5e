"""Evaluation pipeline behind `eval.py`: a checkpoint's val/* and test/* metrics on its task's data.

The module comes from the checkpoint (`from_checkpoint`, weights_only), and the data module gets
what the model fixes (`module.datamodule_kwargs()`: the vocabulary), so the data is encoded the way
the model was trained; the rest of the data config (path, split, batch sizes) comes from `task.data`.
"""

from __future__ import annotations

import sys

import lightning as L
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from rnnlab.utils.errors import UserError, build, quiet_known_warnings
from rnnlab.utils.sweep import write_metrics


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Validate and test `cfg.ckpt_path`; returns {val/loss, val/bpc, val/ppl, test/...}."""
    quiet_known_warnings()
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed)
    module = get_class(cfg.task.module._target_).from_checkpoint(cfg.ckpt_path)
    if "sample_length" in module.hparams:
        module.hparams.sample_length = 0  # evaluation reports numbers; sample.py writes text
    datamodule = build(cfg.task.data, **module.datamodule_kwargs(), _convert_="all")
    trainer: L.Trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    metrics: dict[str, float] = {}
    for run in (trainer.validate, trainer.test):
        for result in run(module, datamodule=datamodule, verbose=False):
            metrics.update({k: float(v) for k, v in result.items()})
    if OmegaConf.select(cfg, "paths.output_dir", throw_on_missing=False):
        write_metrics(cfg.paths.output_dir, metrics)
    print("\n".join(f"{k}: {v:.4f}" for k, v in sorted(metrics.items())))
    return metrics


def main(cfg: DictConfig) -> dict[str, float]:
    """What `eval.py` runs: evaluate, or print a bad-input message and exit 2."""
    try:
        return evaluate(cfg)
    except UserError as e:
        print(f"\nError: {e}", file=sys.stderr)
        sys.exit(2)
