"""Learning-rate schedules as `(optimizer, total_steps) -> LRScheduler` factories.

Task configs name them with `_partial_: true`; the module supplies `total_steps` from the
Trainer (`max_steps`, or `max_epochs` times the batches per epoch).
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def warmup_cosine(optimizer: Optimizer, total_steps: int, warmup_steps: int = 0, min_lr_ratio: float = 0.1) -> LambdaLR:
    """Linear warm-up for `warmup_steps`, then cosine decay to `min_lr_ratio` × lr at `total_steps`.

    Stays at the floor after `total_steps` (a run that outlives its estimate keeps learning slowly).
    The factor is a closure, which LambdaLR leaves out of its state_dict: checkpoints stay
    loadable with `weights_only=True`, and resuming recomputes it from the step count.
    """

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)


def constant(optimizer: Optimizer, total_steps: int) -> LambdaLR:
    """No schedule: the optimizer's lr throughout (handy to switch a sweep axis off)."""
    return LambdaLR(optimizer, lambda step: 1.0)
