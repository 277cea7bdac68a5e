"""What the kernels share."""

from __future__ import annotations

import torch
from torch import Tensor


def needs_grad(*tensors: Tensor | None) -> bool:
    """True when autograd will want a backward through these inputs (so the forward must keep its gates)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
