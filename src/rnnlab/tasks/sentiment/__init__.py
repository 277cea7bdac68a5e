"""Sentiment classification (many-to-one): SST-2 or any labelled text, a recurrent encoder with
pooling or a bag-of-n-grams baseline, accuracy and macro-F1."""

from rnnlab.data.text import Vocab, tokenize
from rnnlab.tasks.contract import Task
from rnnlab.tasks.sentiment.data import Batch, SentimentDataModule
from rnnlab.tasks.sentiment.model import BagOfNgrams, Pooling, RecurrentEncoder, SentimentClassifier
from rnnlab.tasks.sentiment.module import SentimentModule

TASK = Task(name="sentiment", datamodule=SentimentDataModule, module=SentimentModule)

__all__ = ["TASK", "BagOfNgrams", "Batch", "Pooling", "RecurrentEncoder", "SentimentClassifier", "SentimentDataModule", "SentimentModule", "Vocab", "tokenize"]
