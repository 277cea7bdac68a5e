"""Character-level language modelling (char-rnn): data module, Lightning module, sampler."""

from rnnlab.tasks.charlm.data import CharLMDataModule, CharVocab, read_text
from rnnlab.tasks.charlm.module import CharLM, CharLMModule
from rnnlab.tasks.contract import Task

TASK = Task(name="charlm", datamodule=CharLMDataModule, module=CharLMModule)

__all__ = ["TASK", "CharLM", "CharLMDataModule", "CharLMModule", "CharVocab", "read_text"]
