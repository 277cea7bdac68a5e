"""The contract every task meets, so that train.py, eval.py and predict.py run any task unnamed.

A task is a LightningDataModule + a LightningModule, registered by name in `rnnlab.tasks.TASKS`
(`configs/task/<name>.yaml` has `name: <name>`). The entry layer relies on exactly this:

1. Sizes that come from the data. `datamodule.setup()` reads the data; then
   `datamodule.model_kwargs()` gives the module's data-derived constructor arguments (charlm: the
   vocabulary). No config holds them.
2. How the module is built. `Module(**model_kwargs, model=..., optimizer=..., scheduler=...,
   **task options)`, all plain values: `model` the recurrent layer's settings
   ({"layer": "rnnlab", "cell": "lstm", "hidden_size": 256, ...}), `optimizer` / `scheduler` a name
   from a fixed table and its keyword arguments (`rnnlab.tasks.common`). The module stores them as
   its hyper-parameters, so a checkpoint holds plain values only and loads with weights_only=True.
3. The way back from a checkpoint. `Module.from_checkpoint(path)` rebuilds the module (CPU, eval
   mode); `module.datamodule_kwargs()` gives what its data module must be built with to read data
   the way the model was trained (charlm: the same vocabulary).
4. Metrics. Each evaluation stage logs `<stage>/<name>` for every name in `Module.metrics`
   (val/loss, test/loss, ...); `Module.monitor = (metric, "min" | "max")` is the one that picks the
   best checkpoint; `module.derived_metrics(metrics)` adds what follows from final metrics (charlm:
   bits per character and perplexity from the best val/loss).
5. Predict from raw input. `module.predict_text(inputs, **options)`: one output string per input
   string; `options` are the task's own (configs/task/<name>.yaml: `predict:`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable


@runtime_checkable
class TaskDataModule(Protocol):
    """A LightningDataModule that also says which sizes the model takes from the data."""

    def setup(self, stage: str | None = None) -> None: ...

    def model_kwargs(self) -> dict[str, Any]:
        """After `setup()`: the module's data-derived keyword arguments (plain values)."""
        ...


@runtime_checkable
class TaskModule(Protocol):
    """A LightningModule the entry layer can train, evaluate, restore and predict with."""

    name: ClassVar[str]  # the task's key in rnnlab.tasks.TASKS (and configs/task/<name>.yaml)
    monitor: ClassVar[tuple[str, str]]  # (metric, "min" | "max"): what the best checkpoint is best at
    metrics: ClassVar[tuple[str, ...]]  # logged per evaluation stage as val/<name>, test/<name>
    unit: ClassVar[str]  # what one input token is (charlm: "chars"): the throughput is train/<unit>_per_sec

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, checkpoint: Mapping[str, Any] | None = None) -> TaskModule:
        """The module stored in `path` (already loaded: `checkpoint`), on the CPU, in eval mode."""
        ...

    def datamodule_kwargs(self) -> dict[str, Any]:
        """What a data module must be built with to serve data as this model was trained on it."""
        ...

    def derived_metrics(self, metrics: Mapping[str, float]) -> dict[str, float]:
        """Metrics that follow from final ones (e.g. val/bpc from val/loss); {} if none."""
        ...

    def predict_text(self, inputs: Sequence[str], **options: Any) -> list[str]:
        """One output per input, from raw text; `options` are the task's (e.g. length, temperature)."""
        ...


@dataclass(frozen=True)
class Task:
    """A registry entry: the two classes the entry layer builds for `task.name`."""

    name: str
    datamodule: type
    module: type
