"""Tasks: each is a LightningDataModule + a LightningModule meeting one contract
(`rnnlab.tasks.contract`), registered here by name, with its defaults in configs/task/<name>.yaml.

The entry layer finds a task's classes with `get_task(cfg.task.name)` and a checkpoint's module
with `load_module(path)` (the checkpoint records its task's name), so it never names a task.
Adding a task: a folder `rnnlab/tasks/<name>/` whose package defines `TASK = Task(...)`, one line
in `TASKS`, and `configs/task/<name>.yaml`.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from rnnlab.tasks.contract import Task, TaskDataModule, TaskModule
from rnnlab.utils.errors import UserError

# name -> the package that defines TASK; imported on first use (a task pulls in its own libraries).
TASKS: dict[str, str] = {
    "charlm": "rnnlab.tasks.charlm",
    "memory": "rnnlab.tasks.memory",
    "sentiment": "rnnlab.tasks.sentiment",
    "seq2seq": "rnnlab.tasks.seq2seq",
}


def get_task(name: str) -> Task:
    """The registered task called `name`, or a UserError listing the known ones."""
    if name not in TASKS:
        raise UserError(f"task.name={name!r} is not a registered task; the known ones are {sorted(TASKS)} (rnnlab.tasks.TASKS).")
    return importlib.import_module(TASKS[name]).TASK


def load_module(path: str | Path, expected: str | None = None, default: str | None = None) -> Any:
    """The task module stored in checkpoint `path` (CPU, eval mode), whatever its task.

    Args:
        path: a checkpoint written by train.py (loaded with weights_only=True).
        expected: the task the caller's config is for (`task.name`); a checkpoint of another task
            is refused, since that config's task settings would not apply to it.
        default: the task of a checkpoint that records none (written before checkpoints did);
            None: `expected`.
    """
    from rnnlab.tasks.common import checkpoint_task, load_checkpoint

    checkpoint = load_checkpoint(path)
    name = checkpoint_task(checkpoint) or default or expected
    if name is None:
        raise UserError(f"ckpt_path={path} does not say which task it was trained on; pass task=<its task> ({sorted(TASKS)}).")
    if expected is not None and name != expected:
        raise UserError(
            f"ckpt_path={path} holds a {name} model, but the config is for task {expected}: add task={name} "
            f"to the command, so that the {name} task's settings apply."
        )
    return get_task(name).module.from_checkpoint(path, checkpoint=checkpoint)


__all__ = ["TASKS", "Task", "TaskDataModule", "TaskModule", "get_task", "load_module"]
