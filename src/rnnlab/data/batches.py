"""Batch orders the tasks' loaders share: length-bucketed batches, the split of a batch order across
DDP ranks, and a DataLoader that resumes in the middle of an epoch.

Three properties make a run resumable exactly and trainable on several processes:
- an epoch's order depends on (seed, epoch) only, never on how much of torch's global RNG was drawn
  before the loader was iterated, so a resumed run recomputes the order it was in;
- `ResumableLoader` keeps (epoch, batches consumed) in Lightning's checkpoints (the `state_dict` /
  `load_state_dict` interface Lightning looks for) and, resumed, skips what was consumed;
- under DDP every rank computes the same order and takes its own share of it (`rank_world`); the
  trainer runs with `use_distributed_sampler: false`, so Lightning leaves these samplers alone.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler


def rank_world() -> tuple[int, int]:
    """(this process's rank, number of processes) under torch.distributed, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def base_seed() -> int:
    """The seed orders derive from: the one `seed_everything` / `torch.manual_seed` last set."""
    return torch.initial_seed() % (1 << 62)


class BucketBatches(Sampler[list[int]]):
    """Batches of indices with similar lengths, so that little of a batch is padding.

    Args:
        lengths: (N,) lengths of the examples.
        batch_size: examples per batch (the last batch of a chunk may hold fewer).
        shuffle: True (training): each epoch shuffles the examples, cuts them into chunks of
            `bucket_batches` batches, sorts each chunk by length, cuts it into batches and shuffles
            the batches; the order comes from (seed, epoch) alone. False: length order, shortest first.
        bucket_batches: batches per sorted chunk; larger means less padding, batches less random.
        seed: the shuffles' seed; None: `base_seed()` when the sampler is made.
        rank, world: this process's share under DDP. Training (shuffle): every rank walks the same
            batches and takes every `world`-th example of each from the `rank`-th, so `batch_size` is
            the batch of all ranks together and DDP averages the gradient a single process would
            take (a batch with fewer than `world` examples is left out). Evaluation: the same split
            of every batch, each example evaluated once. None: from torch.distributed when the
            sampler is made.
    """

    def __init__(self, lengths: Tensor | Sequence[int], batch_size: int, shuffle: bool, bucket_batches: int = 50,
                 seed: int | None = None, rank: int | None = None, world: int | None = None) -> None:
        self.lengths = torch.as_tensor(lengths, dtype=torch.int64)
        self.batch_size, self.shuffle, self.bucket_batches = batch_size, shuffle, bucket_batches
        self.seed = base_seed() if seed is None else seed
        found = rank_world()
        self.rank, self.world = found[0] if rank is None else rank, found[1] if world is None else world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def all_batches(self) -> list[Tensor]:
        """Every rank's batches of this epoch, in order."""
        if not self.shuffle:
            return list(self.lengths.argsort(stable=True).split(self.batch_size))
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) % (1 << 64))  # any seed: a generator takes 64 bits
        out: list[Tensor] = []
        for chunk in torch.randperm(self.lengths.numel(), generator=g).split(self.batch_size * self.bucket_batches):
            out += chunk[self.lengths[chunk].argsort(stable=True)].split(self.batch_size)
        return [out[i] for i in torch.randperm(len(out), generator=g).tolist()]

    def batches(self) -> list[Tensor]:
        """This rank's batches of this epoch."""
        every = self.all_batches()
        if self.world == 1:
            return every
        if self.shuffle:  # the same number of steps on every rank
            return [b[self.rank :: self.world] for b in every if len(b) >= self.world]
        return [b[self.rank :: self.world] for b in every if len(b) > self.rank]

    def __len__(self) -> int:
        if self.world > 1:
            return len(self.batches())  # batches too small to share are left out
        return math.ceil(self.lengths.numel() / self.batch_size)  # every chunk but the last is whole batches

    def __iter__(self) -> Iterator[list[int]]:
        return (b.tolist() for b in self.batches())


class ZippedOrders(Sampler):
    """Several independent orders of one data set, step by step: each item is a tuple of batches, one
    from each order (an ensemble whose members each see the data in their own order; members that
    share every batch err more alike). `set_epoch` reaches every order.

    Args:
        orders: samplers of index batches, e.g. `BucketBatches` with different seeds.
    """

    def __init__(self, orders: Sequence[Sampler]) -> None:
        self.orders = list(orders)

    def set_epoch(self, epoch: int) -> None:
        for order in self.orders:
            order.set_epoch(epoch)

    def __len__(self) -> int:
        return min(len(order) for order in self.orders)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return zip(*self.orders)


class Zipped(Dataset):
    """A data set indexed by a tuple of index batches (`ZippedOrders`' items): the tuple of those batches."""

    def __init__(self, data: Dataset) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)  # type: ignore[arg-type]

    def __getitem__(self, indices: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(self.data[i] for i in indices)


class EpochIndices(Sampler[int]):
    """0 .. n-1 in order, each epoch: the index sampler of datasets whose items are whole batches
    already (charlm's windows). `set_epoch` passes the epoch on to a dataset that has one."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self)))


class _Resume(Sampler):
    """Wraps a sampler: counts the epochs it starts, and skips the first `skip` items once."""

    def __init__(self, inner: Sampler) -> None:
        self.inner, self.epoch, self.skip = inner, 0, 0

    def __len__(self) -> int:
        return len(self.inner)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Any]:
        if hasattr(self.inner, "set_epoch"):
            self.inner.set_epoch(self.epoch)
        skip, self.skip = self.skip, 0
        self.epoch += 1
        return itertools.islice(iter(self.inner), skip, None)


class ResumableLoader(DataLoader):
    """A DataLoader of whole batches (`sampler` yields what the dataset turns into one batch) that
    Lightning saves and restores with the run: its `state_dict` is the epoch in progress and how
    many of its batches the trainer has consumed; after `load_state_dict` the next iteration
    resumes that epoch with the next batch, in the same order.

    Args:
        dataset: the items.
        sampler: the epoch's order; `set_epoch(e)` is called before each epoch when it has one.
        consumed: how many batches of the epoch in progress the trainer has consumed (train.py's
            data modules pass the trainer's own count, `ResumableTraining`).
    """

    def __init__(self, dataset: Dataset, sampler: Sampler, consumed: Callable[[], int], **kwargs: Any) -> None:
        super().__init__(dataset, sampler=_Resume(sampler), batch_size=None, **kwargs)
        self._consumed = consumed

    def state_dict(self) -> dict[str, int]:
        return {"epoch": max(self.sampler.epoch - 1, 0), "consumed": max(self._consumed(), 0)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        epoch, consumed = int(state["epoch"]), int(state["consumed"])
        if consumed >= len(self.sampler):  # the epoch was complete: the next one starts fresh
            epoch, consumed = epoch + 1, 0
        self.sampler.epoch, self.sampler.skip = epoch, consumed


class ResumableTraining:
    """For a LightningDataModule: its training loader's position travels in the checkpoint as the
    data module's own state (`state_dict` / `load_state_dict`, which Lightning restores before any
    loader is made), and `resumable(dataset, sampler)` makes that loader, at that position.

    (Lightning also saves a stateful loader's state with its fit loop, but restores it only into a
    loader made after the restore; `estimated_stepping_batches`, which the tasks' schedules read in
    `configure_optimizers`, makes the loader before it. Both routes carry the same state.)
    """

    _train_loader: ResumableLoader | None = None
    _loader_state: dict[str, int] | None = None

    def bucketed_loader(self, data: Dataset, batch_size: int, shuffle: bool, bucket_batches: int, orders: int = 1) -> DataLoader:
        """Length-bucketed batches of `data` (it has `lengths`; indexed by a list, it builds a whole
        batch): resumable when shuffled (training), in length order otherwise (evaluation).
        orders > 1 (shuffled only): each step a tuple of `orders` batches, each from its own order
        (seeds base, base + 1, ...)."""
        if shuffle and orders > 1:
            base = base_seed()
            zipped = ZippedOrders([BucketBatches(data.lengths, batch_size, True, bucket_batches, seed=(base + k) % (1 << 62)) for k in range(orders)])
            return self.resumable(Zipped(data), zipped)
        batches = BucketBatches(data.lengths, batch_size, shuffle, bucket_batches)
        if shuffle:
            return self.resumable(data, batches)
        return DataLoader(data, sampler=batches, batch_size=None)

    def resumable(self, dataset: Dataset, sampler: Sampler) -> ResumableLoader:
        loader = ResumableLoader(dataset, sampler, consumed=self._consumed)
        if self._loader_state is not None:
            loader.load_state_dict(self._loader_state)
            self._loader_state = None
        self._train_loader = loader
        return loader

    def _consumed(self) -> int:
        """Training batches of the running epoch the trainer has consumed (stepped on, or accumulated)."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0
        return int(trainer.fit_loop.epoch_loop.batch_progress.current.processed)

    def state_dict(self) -> dict[str, Any]:
        return {"train_loader": self._train_loader.state_dict()} if self._train_loader is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        position = state.get("train_loader")
        if position is None:
            return
        if self._train_loader is not None:
            self._train_loader.load_state_dict(position)
        else:
            self._loader_state = dict(position)
