"""Memory-span tasks: the copy-memory task and the adding problem, each scored beside the answer of
a network that remembers nothing."""

from rnnlab.tasks.contract import Task
from rnnlab.tasks.memory.data import Batch, MemoryDataModule, baseline
from rnnlab.tasks.memory.module import MemoryModule, MemoryNet

TASK = Task(name="memory", datamodule=MemoryDataModule, module=MemoryModule)

__all__ = ["TASK", "Batch", "MemoryDataModule", "MemoryModule", "MemoryNet", "baseline"]
