"""Character-level language modelling (char-rnn): data module, Lightning module, sampler."""

from rnnlab.tasks.charlm.data import CharLMDataModule, CharVocab, read_text
from rnnlab.tasks.charlm.module import CharLM, CharLMModule

__all__ = ["CharLM", "CharLMDataModule", "CharLMModule", "CharVocab", "read_text"]
