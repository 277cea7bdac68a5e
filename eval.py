"""Evaluate a checkpoint: `python eval.py ckpt_path=<run>/checkpoints/best.ckpt` (val/* and test/*).

Thin: Hydra composes configs/eval.yaml, rnnlab.evaluate does the work.
"""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="configs", config_name="eval")
def main(cfg: DictConfig) -> None:
    from rnnlab.entry import run
    from rnnlab.evaluate import evaluate

    run(evaluate, cfg, run_dir=cfg.paths.output_dir)


if __name__ == "__main__":
    main()
