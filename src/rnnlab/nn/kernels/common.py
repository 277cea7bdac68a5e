"""What the kernels share."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from rnnlab.nn.kernels import native


def needs_grad(*tensors: Tensor | None) -> bool:
    """True when autograd will want a backward through these inputs (so the forward must keep its gates)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def loop_for(x: Tensor, native_name: str, python_loop: Callable) -> Callable:
    """The compiled CPU loop `native_name` when it can run on `x` (CPU, float32/64), else `python_loop`
    (same arguments, same results)."""
    ops = native.ops() if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) else None
    return getattr(ops, native_name) if ops is not None else python_loop
