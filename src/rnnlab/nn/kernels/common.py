"""What the kernels share."""

from __future__ import annotations

import torch
from torch import Tensor

from rnnlab.nn.kernels import native


def needs_grad(*tensors: Tensor | None) -> bool:
    """True when autograd will want a backward through these inputs (so the forward must keep its gates)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def native_ops(x: Tensor):
    """The compiled CPU loops when they can run on `x` (CPU, float32/64), else None."""
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return None
    return native.ops()
