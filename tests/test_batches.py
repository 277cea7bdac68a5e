"""Shared batch orders: rank shares, and the loader that resumes in mid-epoch (rnnlab.data.batches)."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from rnnlab.data.batches import BucketBatches, EpochIndices, ResumableLoader


class Items(Dataset):
    def __init__(self, n: int) -> None:
        self.n, self.epoch = n, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[int, int]:
        return (self.epoch, i)


def test_ranks_share_every_batch_without_overlap() -> None:
    lengths = torch.randint(1, 30, (1003,), generator=torch.Generator().manual_seed(0))
    whole = BucketBatches(lengths, 16, shuffle=True, seed=5, rank=0, world=1)
    shares = [BucketBatches(lengths, 16, shuffle=True, seed=5, rank=r, world=3) for r in range(3)]
    every = [b.tolist() for b in whole.batches()]
    got = [[b.tolist() for b in s.batches()] for s in shares]
    kept = [b for b in every if len(b) >= 3]  # a batch too small to give each rank an example is left out
    assert [len(g) for g in got] == [len(s) for s in shares] == [len(kept)] * 3  # the same steps on every rank
    for k, batch in enumerate(kept):  # the ranks' pieces of step k make the single process's batch k
        assert sorted(got[0][k] + got[1][k] + got[2][k]) == sorted(batch)
        assert got[1][k] == batch[1::3]
    # Evaluation: every batch split the same way, every example exactly once over the ranks.
    evals = [BucketBatches(lengths, 100, shuffle=False, rank=r, world=3) for r in range(3)]
    assert sorted(i for e in evals for b in e.batches() for i in b.tolist()) == list(range(1003))
    assert [len(e) for e in evals] == [11, 11, 11]  # 10 batches of 100 and one of 3: a piece of each for every rank
    assert [len(b) for b in evals[0].batches()] == [34] * 10 + [1]


def test_resumable_loader_continues_the_epoch_it_was_saved_in() -> None:
    lengths = torch.randint(1, 30, (200,), generator=torch.Generator().manual_seed(1))
    data = list(range(200))

    class Rows(Dataset):
        def __len__(self) -> int:
            return 200

        def __getitem__(self, idx: list[int]) -> list[int]:
            return [data[i] for i in idx]

    trained = {"n": 0}  # what the trainer reports it consumed

    def loader() -> ResumableLoader:
        return ResumableLoader(Rows(), BucketBatches(lengths, 8, shuffle=True, seed=3), consumed=lambda: trained["n"])

    straight = loader()
    epochs = [list(straight), list(straight)]  # two epochs: different orders
    assert epochs[0] != epochs[1] and len(epochs[0]) == 25

    first = loader()
    it = iter(first)
    seen = [next(it) for _ in range(8)]  # a fetcher one batch ahead: 7 consumed
    trained["n"] = 7
    state = first.state_dict()
    assert state == {"epoch": 0, "consumed": 7}
    resumed = loader()
    resumed.load_state_dict(state)
    assert seen[:7] + list(resumed) == epochs[0]  # the rest of epoch 0, then
    assert list(resumed) == epochs[1]  # epoch 1 as the uninterrupted loader had it

    done = loader()
    list(done)  # a whole epoch: the next one starts fresh
    trained["n"] = 25
    assert done.state_dict() == {"epoch": 0, "consumed": 25}
    after = loader()
    after.load_state_dict(done.state_dict())
    assert list(after) == epochs[1]


def test_resumable_loader_reports_the_trainers_count_and_passes_the_epoch_on() -> None:
    ds = Items(5)
    count = {"n": 0}
    loader = ResumableLoader(ds, EpochIndices(ds), consumed=lambda: count["n"])
    assert [tuple(x) for x in loader] == [(0, i) for i in range(5)]
    it = iter(loader)
    next(it), next(it), next(it)
    count["n"] = 2
    assert loader.state_dict() == {"epoch": 1, "consumed": 2}
    other = Items(5)
    again = ResumableLoader(other, EpochIndices(other), consumed=lambda: 0)
    again.load_state_dict(loader.state_dict())
    assert [tuple(x) for x in again] == [(1, 2), (1, 3), (1, 4)]  # epoch 1 from its third item


def test_any_seed_orders_batches() -> None:
    """An unseeded process's seed (torch.initial_seed(), up to 64 bits) shuffles too: each order is a
    permutation of every sentence."""
    lengths = torch.arange(1, 41)
    orders = []
    for seed in (0, 5, (1 << 62) - 1, (1 << 64) - 1):
        batches = BucketBatches(lengths, 4, True, 2, seed=seed, rank=0, world=1).batches()
        assert sorted(torch.cat(batches).tolist()) == list(range(40))
        orders.append(torch.cat(batches).tolist())
    assert orders[0] != orders[1]
