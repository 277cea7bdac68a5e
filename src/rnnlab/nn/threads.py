"""How many CPU threads a recurrent model should train with: chosen by the work of one step.

A recurrent layer is a chain of T sequential steps, each one (batch, H) x (H, gates·H) matmul and a
pointwise pass. Split across threads, every step is a barrier. Where a step is small the barrier
costs more than the second core saves, and under CPU contention (a sweep's other jobs, any other
program) each barrier waits for a descheduled thread while the others spin: a tiny char-LM run beside
a 2-thread training drops 20x on 2 threads and 1.4x on one. So where one step's matmul is below
SERIAL_BELOW multiply-adds a model runs on one thread; above it, on all of torch's threads.

The native loops (kernels/native/cells.cpp) apply the same rule per call, to their own loop, with
thread-local settings; `threads_for_model` gives train.py the count for the whole process (`threads: auto`).
"""

from __future__ import annotations

import os

import torch
from torch import nn

# Multiply-adds of one step's matmul (batch * gates·H * H) below which a run takes one thread. Measured
# on 2 cores (scripts/bench_cells.py --threads 1 vs all, and train.py): the tiny char-LM run
# (8 x 128 x 32 = 3e4) trains as fast on one thread as on two when idle, and 15x faster beside another
# training; "small" (32 x 512 x 128 = 2e6) is 1.7x slower on one thread. RNNLAB_SERIAL_BELOW overrides it.
SERIAL_BELOW = int(os.environ.get("RNNLAB_SERIAL_BELOW", 1 << 20))

# torch's own count at import (OMP_NUM_THREADS, else the cores): "all threads", even after a run in this
# process (a sweep's earlier job) set one.
DEFAULT_THREADS = torch.get_num_threads()

_TORCH_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


def step_work(batch: int, hidden_size: int, num_gates: int) -> int:
    """Multiply-adds of one step's matmul: (batch, H) x (H, num_gates·H)."""
    return batch * num_gates * hidden_size * hidden_size


def largest_step(model: nn.Module) -> tuple[int, int] | None:
    """(hidden_size, num_gates) of the recurrent layer in `model` with the most work per step (rnnlab
    cells and torch.nn.RNN/LSTM/GRU alike), or None if it has none."""
    from rnnlab.nn.cells.base import RecurrentCell

    found = []
    for m in model.modules():
        if isinstance(m, RecurrentCell):
            found.append((m.hidden_size, m.num_gates))
        elif isinstance(m, nn.RNNBase):
            found.append((m.hidden_size, _TORCH_GATES.get(m.mode, 4)))
    return max(found, key=lambda hg: hg[0] * hg[0] * hg[1], default=None)


def threads_for(batch: int, hidden_size: int, num_gates: int) -> int:
    """1 where one step is below SERIAL_BELOW multiply-adds, else torch's default thread count."""
    return 1 if step_work(batch, hidden_size, num_gates) < SERIAL_BELOW else DEFAULT_THREADS


def threads_for_model(model: nn.Module, batch: int) -> int:
    """threads_for the largest recurrent layer of `model` at this batch size (no recurrent layer:
    torch's default count)."""
    step = largest_step(model)
    return DEFAULT_THREADS if step is None else threads_for(batch, *step)
