"""Apply a checkpoint of any task to raw text, one output a line on stdout:

    python predict.py ckpt_path=<run>/checkpoints/best.ckpt input="ROMEO:"          # one input
    python predict.py ckpt_path=<run>/checkpoints/best.ckpt input_file=prompts.txt  # one input a line
    cat prompts.txt | python predict.py ckpt_path=<run>/checkpoints/best.ckpt       # stdin (or input=-)
    python predict.py ckpt_path=... input="ROMEO:" length=300 seed=1                  # the task's options
    python predict.py ckpt_path=<a seq2seq run>/checkpoints/best.ckpt input="zwei hunde spielen im schnee" beam=5
    python predict.py ckpt_path=<a sentiment run>/checkpoints/best.ckpt input="a gripping, funny film"

Thin: Hydra composes configs/predict.yaml (which writes no output directory), rnnlab.predict does the work.
"""

import re
import sys

import hydra
from omegaconf import DictConfig


def quote_input(argv: list[str]) -> list[str]:
    """`argv` with each `input=<text>` written as Hydra's quoted string, so a sentence with commas,
    brackets or quotes arrives as typed (unquoted, Hydra reads `input=a gripping, funny film` as a
    list and stops). Hydra's quoting: `\\'` is a quote; backslashes before a quote or the end double."""
    out = []
    for arg in argv:
        text = arg[len("input="):]
        quoted = len(text) >= 2 and text[0] == text[-1] and text[0] in "'\""  # the user quoted it for Hydra already
        if arg.startswith("input=") and not quoted:
            text = re.sub(r"(\\+)('|$)", lambda m: m.group(1) * 2 + m.group(2), text)
            arg = "input='" + text.replace("'", "\\'") + "'"
        out.append(arg)
    return out


@hydra.main(version_base="1.3", config_path="configs", config_name="predict")
def main(cfg: DictConfig) -> None:
    from rnnlab.entry import run
    from rnnlab.predict import main as predict

    run(predict, cfg)


def bare_options(argv: list[str]) -> list[str]:
    """`argv` with each bare `name=value` that is not one of predict.yaml's own keys written as
    `+options.name=value`: the checkpoint's task's prediction option (beam=5, length=300,
    all_labels=true), whichever task it is."""
    own = {"ckpt_path", "input", "input_file", "format", "device", "task", "paths", "hydra", "options"}
    out = []
    for arg in argv:
        name = arg.split("=", 1)[0]
        if "=" in arg and re.fullmatch(r"[A-Za-z_]\w*", name) and name not in own:
            arg = "+options." + arg
        out.append(arg)
    return out


if __name__ == "__main__":
    sys.argv = bare_options(quote_input(sys.argv))
    main()
