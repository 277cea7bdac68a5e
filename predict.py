"""Apply a checkpoint of any task to raw text, one output a line on stdout:

    python predict.py ckpt_path=<run>/checkpoints/best.ckpt input="ROMEO:"          # one input
    python predict.py ckpt_path=<run>/checkpoints/best.ckpt input_file=prompts.txt  # one input a line
    cat prompts.txt | python predict.py ckpt_path=<run>/checkpoints/best.ckpt       # stdin (or input=-)
    python predict.py ckpt_path=... input="ROMEO:" task.predict.length=300 task.predict.seed=1

Thin: Hydra composes configs/predict.yaml (which writes no output directory), rnnlab.predict does the work.
"""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="configs", config_name="predict")
def main(cfg: DictConfig) -> None:
    from rnnlab.entry import run
    from rnnlab.predict import main as predict

    run(predict, cfg)


if __name__ == "__main__":
    main()
