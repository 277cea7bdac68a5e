"""Sequence to sequence: an encoder-decoder with attention (none | bahdanau | luong_dot |
luong_general), teacher forcing, greedy and beam search, token accuracy, exact match and BLEU, on
synthetic tasks (reverse, sort, addition, dates), Multi30k German-English, or a user's pairs."""

from rnnlab.tasks.contract import Task
from rnnlab.tasks.seq2seq.data import Batch, Codec, Seq2SeqDataModule
from rnnlab.tasks.seq2seq.model import Attention, Seq2Seq
from rnnlab.tasks.seq2seq.module import Seq2SeqModule

TASK = Task(name="seq2seq", datamodule=Seq2SeqDataModule, module=Seq2SeqModule)

__all__ = ["TASK", "Attention", "Batch", "Codec", "Seq2Seq", "Seq2SeqDataModule", "Seq2SeqModule"]
