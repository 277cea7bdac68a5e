"""Generate text from a char-LM checkpoint (charlm's spelling of predict.py):

    python sample.py ckpt_path=<run>/checkpoints/best.ckpt prime="ROMEO:" length=500 temperature=0.8 top_k=10

Thin: Hydra composes configs/sample.yaml (which writes no output directory), rnnlab.sample does the work.
"""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="configs", config_name="sample")
def main(cfg: DictConfig) -> None:
    from rnnlab.entry import run
    from rnnlab.sample import main as sample

    run(sample, cfg)


if __name__ == "__main__":
    main()
