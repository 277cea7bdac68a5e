"""Train a model on a task: `python train.py task=charlm model=lstm` (see `python train.py --help`).

Thin on purpose: Hydra composes configs/train.yaml, rnnlab.train does the work. The imports are
inside main so that --help and config errors answer before torch and Lightning load.
"""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from rnnlab.entry import run
    from rnnlab.train import main as train

    return run(train, cfg, run_dir=cfg.paths.output_dir)


if __name__ == "__main__":
    main()
