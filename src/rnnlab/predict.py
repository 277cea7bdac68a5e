"""Prediction behind `predict.py`: any task's checkpoint applied to raw text, one input a line.

Inputs come from `input=` (one; `\\n` in it is a newline), `input_file=` (one a line), or stdin
(`input=-`, or neither given while stdin is not a terminal). The task's own options are
`task.predict.*` (configs/task/<task>.yaml), or `options.*` (predict.py's bare `beam=5`, for the
checkpoint's task whichever it is); the module's `predict_text` does the work. The
checkpoint says which task it is; without task= on the command line, a checkpoint of another task
than the config's default runs with its predict_text defaults.
"""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path
from typing import TextIO

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from rnnlab.entry import plain, required
from rnnlab.sample import unescape
from rnnlab.tasks import load_module
from rnnlab.utils.errors import UserError, quiet_known_warnings

FORMATS = ("text", "jsonl")


def read_inputs(cfg: DictConfig, stdin: TextIO | None = None) -> list[str]:
    """The inputs `cfg.input` / `cfg.input_file` / stdin give, one string each (lines without their
    line break)."""
    stdin = sys.stdin if stdin is None else stdin
    given, path = cfg.get("input"), cfg.get("input_file")
    if given is not None and path is not None:
        raise UserError(f"input={given!r} and input_file={path}: give one of them, not both.")
    if path is not None:
        file = Path(str(path))
        if not file.is_file():
            raise UserError(f"input_file={path}: no such file. Give a UTF-8 text file with one input a line.")
        try:
            text = file.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as e:
            raise UserError(f"input_file={path} is not UTF-8 text (byte {e.start}: {e.reason}). Convert it first, e.g. with iconv.") from e
        return text.splitlines()
    if given is None or str(given) == "-":
        if given is None and stdin.isatty():
            raise UserError(
                'no input: give input="<text>", input_file=<a file with one input a line>, or pipe the inputs '
                "into stdin (input=- reads stdin explicitly)."
            )
        return stdin.read().splitlines()
    return [unescape(given)]


def task_chosen() -> bool:
    """Whether the command line chose the task (task=... or a task.* override); True outside Hydra."""
    if not HydraConfig.initialized():
        return True
    return any(o.lstrip("+~").split("=", 1)[0].split(".", 1)[0] == "task" for o in HydraConfig.get().overrides.task)


def predict(cfg: DictConfig, stdin: TextIO | None = None) -> list[tuple[str, str]]:
    """(input, output) for each input of `cfg`, the outputs from `cfg.ckpt_path`'s module."""
    quiet_known_warnings()
    ckpt_path = required(cfg, "ckpt_path", 'python predict.py ckpt_path=outputs/<task>/runs/<time>/checkpoints/best.ckpt input="ROMEO:"')
    if cfg.get("format", "text") not in FORMATS:
        raise UserError(f"format={cfg.format!r}: choose one of {FORMATS}.")
    inputs = read_inputs(cfg, stdin)
    if not inputs:
        raise UserError("no input: the file or stdin held no lines.")
    chosen = task_chosen()
    # A checkpoint names its task: with no task= on the command line, that task's predict_text runs
    # with its own defaults (the config's task.predict.* belong to the config's default task).
    module = load_module(ckpt_path, expected=cfg.task.name if chosen else None, default=cfg.task.name).to(cfg.get("device", "cpu"))
    given = plain(cfg.get("options")) or {}  # predict.py's bare name=value: for the checkpoint's task, whichever it is
    options = {**((plain(cfg.task.get("predict")) or {}) if module.name == cfg.task.name else {}), **given}
    accepted = inspect.signature(module.predict_text).parameters
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        known = [p for p in accepted if p != "inputs"]
        named = ", ".join(k if k in given else f"task.predict.{k}" for k in unknown)
        raise UserError(f"{named}: the {module.name} task has no such option; it takes {known}.")
    outputs = module.predict_text(inputs, **options)
    return list(zip(inputs, outputs, strict=True))


def main(cfg: DictConfig) -> list[tuple[str, str]]:
    """What `predict.py` runs: print each output (format=text: the output and a line break;
    format=jsonl: {"input": ..., "output": ...} a line). Errors: `rnnlab.entry.run`."""
    pairs = predict(cfg)
    jsonl = cfg.get("format", "text") == "jsonl"
    for given, output in pairs:
        print(json.dumps({"input": given, "output": output}, ensure_ascii=False) if jsonl else output)
    return pairs
