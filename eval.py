"""Evaluate a checkpoint: `python eval.py ckpt_path=<run>/checkpoints/best.ckpt` (val/* and test/*).

Thin: Hydra composes configs/eval.yaml, rnnlab.evaluate does the work.
"""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="configs", config_name="eval")
def main(cfg: DictConfig) -> None:
    from rnnlab.evaluate import main as run

    run(cfg)


if __name__ == "__main__":
    main()
