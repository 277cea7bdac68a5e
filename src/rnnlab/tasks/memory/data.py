"""Memory-span tasks: how long can a recurrent network hold what it has seen?

- copy (Arjovsky, Shah & Bengio 2016): `remember` symbols from 1..8, then T-1 blanks (0), a
  delimiter (9) and `remember` more blanks; the target is blank for the first T + remember steps,
  then the symbols, in order. Sequences are T + 2·remember long; the loss is the cross-entropy over
  every step. The memoryless answer (blank until the delimiter, then a uniform guess among the 8)
  scores remember·log(8) / (T + 2·remember).
- adding (Hochreiter & Schmidhuber 1997): T steps of (value ~ U(0, 1), marker); exactly two steps
  are marked, one in each half; the target is the sum of the two marked values. Always answering 1
  scores an MSE of 1/6 (the variance of a sum of two uniforms).

Every example is drawn from its own generator, seeded by (data_seed, split, index): the same seed
gives the same data on every machine and in any batch order, and nothing is held in memory.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, NamedTuple

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from rnnlab.data.batches import ResumableTraining
from rnnlab.utils.errors import UserError

PROBLEMS = ("copy", "adding")
SPLITS = ("train", "val", "test")
ALPHABET = 8  # copy: data symbols 1..8
BLANK, DELIMITER = 0, ALPHABET + 1
COPY_CLASSES = ALPHABET + 2  # blank, 8 symbols, delimiter
NEAR = 0.04  # adding: an answer within 0.04 of the sum counts as right (Hochreiter & Schmidhuber 1997)


def baseline(problem: str, T: int, remember: int = 10) -> float:
    """The memoryless answer's loss: copy cross-entropy remember·log(8)/(T + 2·remember); adding MSE 1/6."""
    return remember * math.log(ALPHABET) / (T + 2 * remember) if problem == "copy" else 1 / 6


def sequence_length(problem: str, T: int, remember: int = 10) -> int:
    return T + 2 * remember if problem == "copy" else T


def copy_example(g: torch.Generator, T: int, remember: int) -> tuple[Tensor, Tensor]:
    """x, y: (T + 2·remember,) int64 ids (0 blank, 1..8 symbols, 9 delimiter)."""
    symbols = torch.randint(1, ALPHABET + 1, (remember,), generator=g)
    x = torch.zeros(T + 2 * remember, dtype=torch.long)
    x[:remember] = symbols
    x[T + remember - 1] = DELIMITER
    y = torch.zeros_like(x)
    y[T + remember :] = symbols
    return x, y


def adding_example(g: torch.Generator, T: int) -> tuple[Tensor, Tensor]:
    """x: (T, 2) float (value, marker), y: () float, the sum of the two marked values."""
    values = torch.rand(T, generator=g)
    half = T // 2
    first = int(torch.randint(0, half, (1,), generator=g))
    second = int(torch.randint(half, T, (1,), generator=g))
    markers = torch.zeros(T)
    markers[[first, second]] = 1.0
    return torch.stack([values, markers], 1), values[first] + values[second]


class Batch(NamedTuple):
    """lengths: (B,) every sequence's length (all equal); x: copy (B, L) ids, adding (B, T, 2);
    y: copy (B, L) ids, adding (B,) sums."""

    lengths: Tensor
    x: Tensor
    y: Tensor


class MemoryDataset(Dataset):
    """`size` examples of one split, each generated when asked for (indexed by a list: a batch)."""

    def __init__(self, problem: str, T: int, remember: int, size: int, seed: int, split: str) -> None:
        self.problem, self.T, self.remember, self.size = problem, T, remember, size
        self.key = f"{seed}/{split}/"
        self.lengths = torch.full((size,), sequence_length(problem, T, remember), dtype=torch.long)

    def __len__(self) -> int:
        return self.size

    def example(self, i: int) -> tuple[Tensor, Tensor]:
        # torch's CPU generator keeps 32 bits of its seed: (seed, split, i) is hashed down to them.
        g = torch.Generator().manual_seed(int.from_bytes(hashlib.blake2b(f"{self.key}{i}".encode(), digest_size=4).digest(), "little"))
        return copy_example(g, self.T, self.remember) if self.problem == "copy" else adding_example(g, self.T)

    def __getitem__(self, indices: list[int]) -> Batch:
        xs, ys = zip(*(self.example(i) for i in indices))
        return Batch(self.lengths[: len(indices)].clone(), torch.stack(xs), torch.stack(ys))


def _positive_int(key: str, value: Any, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UserError(f"task.data.{key}={value!r}: must be an integer >= {minimum}.")


class MemoryDataModule(ResumableTraining, L.LightningDataModule):
    """Copy-memory or adding-problem batches (see the module docstring).

    Args:
        name: 'copy' | 'adding'.
        T: copy: the delay (blanks between the symbols and the delimiter, plus one); adding: the
            sequence length.
        remember: copy: the symbols to reproduce.
        sizes: [train, val, test] examples; an epoch is one pass over the training examples.
        data_seed: the examples' seed (the same data for every training seed).
        batch_size, eval_batch_size: batching (eval None: 4 × batch_size).
    """

    def __init__(self, name: str = "copy", T: int = 100, remember: int = 10, sizes: list[int] | tuple[int, ...] = (64000, 1024, 1024),
                 data_seed: int = 0, batch_size: int = 64, eval_batch_size: int | None = None) -> None:
        super().__init__()
        if name not in PROBLEMS:
            raise UserError(f"task.data.name={name!r}: choose one of {PROBLEMS} (copy: the copy-memory task; adding: the adding problem).")
        _positive_int("T", T, 2)
        _positive_int("remember", remember)
        _positive_int("batch_size", batch_size)
        if eval_batch_size is not None:
            _positive_int("eval_batch_size", eval_batch_size)
        sizes = list(sizes)
        if len(sizes) != 3 or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in sizes):
            raise UserError(f"task.data.sizes={sizes}: give [train, val, test] as three positive integers.")
        self.name, self.T, self.remember, self.sizes, self.data_seed = name, T, remember, sizes, data_seed
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or 4 * batch_size
        self.splits: dict[str, MemoryDataset] = {}

    def setup(self, stage: str | None = None) -> None:
        for split, size in zip(SPLITS, self.sizes):
            self.splits.setdefault(split, MemoryDataset(self.name, self.T, self.remember, size, self.data_seed, split))

    def model_kwargs(self) -> dict[str, Any]:
        return {"problem": self.name, "T": self.T, "remember": self.remember}

    def train_dataloader(self) -> DataLoader:
        # Equal lengths: the bucketed loader is a plain shuffle here, resumable and split over DDP ranks.
        return self.bucketed_loader(self.splits["train"], self.batch_size, True, 1)

    def val_dataloader(self) -> DataLoader:
        return self.bucketed_loader(self.splits["val"], self.eval_batch_size, False, 1)

    def test_dataloader(self) -> DataLoader:
        return self.bucketed_loader(self.splits["test"], self.eval_batch_size, False, 1)
