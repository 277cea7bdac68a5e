"""Sentiment data: labelled sentences from SST-2, a CSV/TSV table or one file per class, as
length-bucketed batches of word ids.

Sources (`SentimentDataModule`'s `path` / `files`):
- nothing: SST-2 (`<data dir>/sst2/{train,dev,test}.tsv`, downloaded and checked on first use);
- `path=reviews.csv`: one table, its text and label columns named by `text_column` / `label_column`
  (header names or 0-based indices), split into train/val/test by `split` and `split_seed`;
- `path={train: a.csv, val: b.csv, test: c.csv}`: splits as given (a missing val or test is carved
  out of train at its `split` fraction);
- `files={pos: pos.txt, neg: neg.txt}`: one example a line, labelled by the key; split as one table.
Splits are stratified (each class is cut by the same fractions) and depend on `split_seed` only,
not on the training seed, so runs with different seeds see the same split.

Labels are mapped to ids in a fixed order (declared by `labels`, else numeric or alphabetical),
and the names travel with the model. A line whose text has no tokens is an error by default
(`empty_lines=error`); `empty_lines=skip` drops such lines and logs how many, and where.

Batches are bucketed by length: each epoch, the training set is shuffled, cut into chunks of
`bucket_batches` batches, each chunk sorted by length and cut into batches, and the batches shuffled;
so a batch holds sentences of similar length (little padding) while the order stays random.
Validation and test batches are sorted by length. A batch is `Batch(lengths, x, y)`.
"""

from __future__ import annotations

import logging
import random
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from rnnlab.data.batches import BucketBatches, ResumableTraining
from rnnlab.data.download import SST2, fetch
from rnnlab.tasks.sentiment.sources import SST2_LABELS, Example, label_mapping, ordered_labels, read_class_files, read_table
from rnnlab.data.text import PAD_ID, UNK_ID, Vocab, check_tokenizer, tokenize
from rnnlab.utils.errors import UserError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
EMPTY_LINES = ("error", "skip")


class Batch(NamedTuple):
    """lengths: (B,) int64, each >= 1; x: (B, T) word ids, PAD_ID past each length, T = max length;
    y: (B,) class ids. `lengths` comes first: the Throughput callback counts `batch[0].numel()`,
    which makes the throughput sentences per second."""

    lengths: Tensor
    x: Tensor
    y: Tensor


class EncodedSplit(Dataset):
    """One split as flat tensors: the word ids of every sentence end to end, where each starts, its
    length and its class. Indexed by a list of sentence indices, it returns their `Batch`."""

    def __init__(self, sentences: Sequence[Sequence[int]], labels: Sequence[int]) -> None:
        self.lengths = torch.tensor([len(s) for s in sentences], dtype=torch.long)
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.long), self.lengths.cumsum(0)[:-1]])
        self.ids = torch.tensor([i for s in sentences for i in s], dtype=torch.long)
        self.labels = torch.tensor(list(labels), dtype=torch.long)

    def __len__(self) -> int:
        return self.lengths.numel()

    def __getitem__(self, index: Sequence[int]) -> Batch:
        idx = torch.as_tensor(index, dtype=torch.long)
        lengths = self.lengths[idx]
        steps = torch.arange(int(lengths.max()))
        real = steps < lengths[:, None]  # (B, T)
        pos = (self.offsets[idx, None] + steps).clamp_(max=self.ids.numel() - 1)
        return Batch(lengths, self.ids[pos].masked_fill_(~real, PAD_ID), self.labels[idx])


def padding_share(batches: Sequence[Tensor], lengths: Tensor) -> float:
    """The fraction of padded positions in `batches` of sentence indices (0: no padding)."""
    padded = sum(len(b) * int(lengths[b].max()) for b in batches)
    return 1.0 - int(lengths.sum()) / max(padded, 1)


def stratified_split(names: Sequence[str], fractions: Sequence[float], seed: int) -> list[list[int]]:
    """Indices of the examples of classes `names` for train, val, test: each class shuffled (by
    `seed`) and cut at the cumulative `fractions`, so every split keeps the classes' proportions."""
    rng = random.Random(seed)
    by_class: dict[str, list[int]] = defaultdict(list)
    for i, name in enumerate(names):
        by_class[name].append(i)
    out: list[list[int]] = [[], [], []]
    for name in sorted(by_class):
        group = by_class[name]
        rng.shuffle(group)
        bounds, cum = [0], 0.0
        for f in fractions:
            cum += f
            bounds.append(min(len(group), round(cum * len(group))))
        for k in range(3):
            out[k] += group[bounds[k] : bounds[k + 1]]
    return [sorted(part) for part in out]  # file order within a split: the loaders shuffle or sort anyway


def _positive_int(value: object, key: str, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise UserError(f"task.data.{key}={value!r}: must be a positive integer{' or null' if allow_none else ''}.")


class SentimentDataModule(ResumableTraining, L.LightningDataModule):
    """Train/val/test labelled sentences as bucketed batches of word ids.

    Args:
        path: a CSV/TSV file, or {train: ..., val: ..., test: ...}; None (and no `files`): SST-2.
        files: one file per class, one example a line: {label: path}.
        data_dir: where SST-2 is cached; None: $RNNLAB_DATA_DIR, else ./data.
        text_column, label_column: the table's columns, by header name or 0-based index.
        header: whether the table's first line names the columns.
        delimiter: the table's separator; None: a tab for .tsv (or a tab in the first line), else a comma.
        labels: the declared labels, in id order, as a list or a mapping {as written: name}; a label
            outside them is an error. None: SST-2's (0: negative, 1: positive), or those in the data.
        split: train/val/test fractions, for a source that is not split already (sum <= 1).
        split_seed: the seed of that split (kept apart from the training seed).
        tokenizer, lowercase: how text becomes tokens (`rnnlab.data.text.tokenize`).
        min_freq, max_size: the vocabulary keeps training tokens seen >= min_freq times, at most
            max_size of them (most frequent first; None: all).
        empty_lines: 'error' or 'skip' (with a warning) for lines with no tokens.
        batch_size, eval_batch_size: sentences per batch (eval None: 4 × batch_size).
        bucket_batches: training batches per length-sorted chunk.
        orders: > 1: each training step is a tuple of this many batches, each from its own shuffle of
            the training set, one per ensemble member (`task.module.ensemble` of the same size).
        vocab, label_names: fixed by a trained model (`module.datamodule_kwargs()`) instead of
            built from the data.

    `model_kwargs()` after `setup()`: the vocabulary, the label names and the tokeniser settings.
    """

    def __init__(
        self,
        path: str | Mapping[str, str] | None = None,
        files: Mapping[str, str] | None = None,
        data_dir: str | None = None,
        text_column: str | int = "text",
        label_column: str | int = "label",
        header: bool = True,
        delimiter: str | None = None,
        labels: Sequence[object] | Mapping[object, object] | None = None,
        split: Sequence[float] = (0.8, 0.1, 0.1),
        split_seed: int = 0,
        tokenizer: str = "words",
        lowercase: bool = True,
        min_freq: int = 1,
        max_size: int | None = None,
        empty_lines: str = "error",
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        bucket_batches: int = 50,
        orders: int = 1,
        vocab: Sequence[str] | None = None,
        label_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        for key, value, none_ok in [("batch_size", batch_size, False), ("eval_batch_size", eval_batch_size, True), ("min_freq", min_freq, False),
                                    ("max_size", max_size, True), ("bucket_batches", bucket_batches, False),
                                    ("orders", orders, False)]:
            _positive_int(value, key, none_ok)
        split = [float(f) for f in split]
        if len(split) != 3 or any(f <= 0 for f in split) or sum(split) > 1 + 1e-9:
            raise UserError(f"task.data.split={split}: give three positive fractions for train, val and test that sum to at most 1, e.g. [0.8,0.1,0.1].")
        if empty_lines not in EMPTY_LINES:
            raise UserError(f"task.data.empty_lines={empty_lines!r}: choose one of {EMPTY_LINES}.")
        check_tokenizer(tokenizer, lowercase)
        if path is not None and files is not None:
            raise UserError("task.data.path and task.data.files are both set: give a table (path) or one file per class (files), not both.")
        if isinstance(path, Mapping) and (not set(path) <= set(SPLITS) or "train" not in path):
            raise UserError(f"task.data.path={dict(path)}: a split data set names its files by split: train (required), val, test.")
        self.path, self.files, self.data_dir = path, files, data_dir
        self.table = {"text_column": text_column, "label_column": label_column, "header": header, "delimiter": delimiter}
        self.labels = label_mapping(labels)
        self.split, self.split_seed = split, split_seed
        self.tokenizer, self.lowercase, self.empty_lines = tokenizer, lowercase, empty_lines
        self.min_freq, self.max_size = min_freq, max_size
        self.batch_size, self.eval_batch_size, self.bucket_batches = batch_size, eval_batch_size or 4 * batch_size, bucket_batches
        self.orders = orders
        self.vocab: Vocab | None = Vocab(vocab) if vocab is not None else None
        self.label_names: list[str] | None = list(label_names) if label_names is not None else None
        self.splits: dict[str, EncodedSplit] = {}

    # ---- reading ---------------------------------------------------------------------------

    def read(self) -> dict[str, list[Example] | None]:
        """The examples of each split as the source gives them; None for a split to be carved out."""
        if self.files is not None:
            return {"train": read_class_files(self.files), "val": None, "test": None}
        if self.path is None:  # SST-2: GLUE's dev set is our validation set, its labelled test our test
            sst2 = {"text_column": 1, "label_column": 0, "header": True, "delimiter": "\t"}
            return {split: read_table(fetch(SST2[name], self.data_dir), **sst2, field=f"SST-2 {name}") for split, name in zip(SPLITS, ("train", "dev", "test"))}
        paths = self.path if isinstance(self.path, Mapping) else {"train": self.path}
        where = (lambda s: f"task.data.path.{s}") if isinstance(self.path, Mapping) else (lambda s: "task.data.path")
        return {s: read_table(paths[s], **self.table, field=where(s)) if s in paths else None for s in SPLITS}

    def _mapping(self) -> dict[str, str] | None:
        if self.labels is None and self.path is None and self.files is None:
            return SST2_LABELS
        return self.labels

    def _clean(self, examples: list[Example]) -> tuple[list[list[str]], list[str]]:
        """Tokens and label names of `examples` (lines without tokens skipped or refused)."""
        mapping = self._mapping()
        tokens, names, skipped = [], [], []
        for ex in examples:
            words = tokenize(ex.text, self.tokenizer, self.lowercase)
            if not words:
                if self.empty_lines == "skip":
                    skipped.append(ex)
                    continue
                raise UserError(
                    f"{ex.where}: the text has no tokens ({ex.text!r}), so there is nothing to classify. Remove the "
                    f"line, or set task.data.empty_lines=skip to drop such lines (a warning counts them)."
                )
            if not ex.label:
                raise UserError(f"{ex.where}: the label is empty. Give every line a label.")
            if mapping is not None and ex.label not in mapping:
                raise UserError(f"{ex.where}: label {ex.label!r} is not one of the declared labels {list(mapping)} (task.data.labels). Fix the line, or declare the label.")
            name = mapping[ex.label] if mapping is not None else ex.label
            if self.label_names is not None and name not in self.label_names:
                raise UserError(f"{ex.where}: label {name!r} is not one the model was trained on ({self.label_names}).")
            tokens.append(words)
            names.append(name)
        if skipped:
            shown = "; ".join(ex.where for ex in skipped[:3]) + ("; ..." if len(skipped) > 3 else "")
            log.warning("skipped %d line(s) with no tokens (task.data.empty_lines=skip): %s", len(skipped), shown)
        return tokens, names

    # ---- setup -----------------------------------------------------------------------------

    def prepare_data(self) -> None:
        if self.path is None and self.files is None:  # download SST-2 once, before any process calls setup
            for remote in SST2.values():
                fetch(remote, self.data_dir)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:  # train.py calls setup before the Trainer does; read the files once
            return
        read = self.read()
        cleaned = {s: self._clean(ex) for s, ex in read.items() if ex is not None}
        missing = [s for s in SPLITS if read[s] is None]
        if missing:  # carve the missing splits out of train, stratified
            tokens, names = cleaned["train"]
            if len(missing) == 2:  # one source for all three: the split as given (a remainder is dropped)
                fractions = list(self.split)
            else:  # train keeps all but the missing split's fraction
                fractions = [1.0 - self.split[SPLITS.index(missing[0])]] + [self.split[k] if SPLITS[k] in missing else 0.0 for k in (1, 2)]
            parts = stratified_split(names, fractions, self.split_seed)
            for s, idx in zip(SPLITS, parts):
                if s == "train" or s in missing:
                    cleaned[s] = ([tokens[i] for i in idx], [names[i] for i in idx])
        self._check_classes(cleaned, read)
        self.label_names = self.label_names or self._order(cleaned)
        if self.vocab is None:
            self.vocab = Vocab.build(cleaned["train"][0], self.min_freq, self.max_size)
        ids = {name: i for i, name in enumerate(self.label_names)}
        self.splits = {s: EncodedSplit([self.vocab.encode(t) for t in toks], [ids[n] for n in names]) for s, (toks, names) in cleaned.items()}
        train = self.splits["train"]
        with torch.random.fork_rng():  # a sample epoch for the log, drawn without moving the seeded RNG
            share = padding_share(BucketBatches(train.lengths, self.batch_size, True, self.bucket_batches).batches(), train.lengths)
        log.info(
            "sentiment data: train/val/test %d/%d/%d sentences, labels %s, vocabulary %d; unknown words in val %.1f%%; padding %.1f%% of training batches",
            *(len(self.splits[s]) for s in SPLITS), self.label_names, len(self.vocab), 100 * self._unknown_share("val"), 100 * share,
        )

    def _order(self, cleaned: Mapping[str, tuple[list, list[str]]]) -> list[str]:
        """Label names in id order: as declared (task.data.labels, or the files' keys), else numeric/alphabetical."""
        mapping = self._mapping()
        if mapping is not None:
            return list(dict.fromkeys(mapping.values()))
        if self.files is not None:
            return [str(k) for k in self.files]
        return ordered_labels([n for _, names in cleaned.values() for n in names])

    def _check_classes(self, cleaned: Mapping[str, tuple[list, list[str]]], read: Mapping[str, list[Example] | None]) -> None:
        """UserError for a split with no examples, or training data with a single class."""
        for s in SPLITS:
            if not cleaned[s][1]:
                raise UserError(
                    f"The {s} split has no examples (task.data.split={self.split}, {len(cleaned['train'][1])} training "
                    f"examples): give more data, or larger fractions."
                )
        present = Counter(cleaned["train"][1])
        if len(present) < 2:
            sources = sorted({ex.path for ex in read["train"] or []})
            raise UserError(
                f"{', '.join(sources)}: every training example has the label {next(iter(present))!r}; a classifier needs "
                f"at least two classes. Add examples of another class (task.data.files takes one file per class)."
            )

    def _unknown_share(self, split: str) -> float:
        ids = self.splits[split].ids
        return float((ids == UNK_ID).float().mean()) if ids.numel() else 0.0

    def model_kwargs(self) -> dict:
        """What the model takes from the data: vocabulary, label names and tokeniser (plain values)."""
        if self.vocab is None or self.label_names is None:
            raise RuntimeError("SentimentDataModule.model_kwargs() needs setup() first.")
        return {"vocab": list(self.vocab.words), "labels": list(self.label_names), "tokenizer": self.tokenizer, "lowercase": self.lowercase}

    # ---- loaders ---------------------------------------------------------------------------

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> DataLoader:
        return self.bucketed_loader(self.splits[split], batch_size, shuffle, self.bucket_batches, self.orders)  # orders: training only

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.eval_batch_size, shuffle=False)
