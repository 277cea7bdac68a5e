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


# ---------------------------------------------------------------- the GEMMs outside the loops
# Every step's input projection at once, and the weight gradients, are the biggest products a
# recurrent layer makes. On CPU they take the native loops' route (native/cells.cpp, `matmul`):
# oneDNN for large float32 products, where MKL's sgemm is slow on AMD processors, else BLAS.


def _native_matmul(a: Tensor, b: Tensor) -> Callable | None:
    """The native matmul when it would take a route of its own for a @ b, else None (torch's op)."""
    if a.device.type != "cpu" or a.dtype != torch.float32 or b.dtype != torch.float32 or a.dim() != 2:
        return None
    ops = native.ops()
    if ops is None or a.size(0) * a.size(1) * b.size(-1) < native.onednn_from():
        return None
    return ops.matmul


class _Linear(torch.autograd.Function):
    """x @ wᵀ + b on the native route; its backward is made of `linear` calls, so it can be
    differentiated again (create_graph=True)."""

    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, w)
        ctx.has_bias = b is not None
        return native.ops().matmul(x, w.t(), b)

    @staticmethod
    def backward(ctx, g: Tensor):
        x, w = ctx.saved_tensors
        dx = linear(g, w.t()) if ctx.needs_input_grad[0] else None  # g W
        dw = linear(g.t(), x.t()) if ctx.needs_input_grad[1] else None  # gᵀ x
        db = g.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return dx, dw, db


def linear(x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
    """F.linear(x, w, b): x (..., K), w (N, K), b (N,) -> (..., N), large float32 CPU products
    through oneDNN (see above); same results to float32 rounding."""
    x2 = x.reshape(-1, x.size(-1)) if x.dim() != 2 else x
    fast = _native_matmul(x2, w.t())
    if fast is None:
        return torch.nn.functional.linear(x, w, b)
    out = _Linear.apply(x2, w, b) if needs_grad(x2, w, b) else fast(x2, w.t(), b)
    return out if x.dim() == 2 else out.reshape(*x.shape[:-1], w.size(0))


def matmul(a: Tensor, b: Tensor) -> Tensor:
    """a (M, K) @ b (K, N) outside autograd (the kernels' weight gradients), on the same route."""
    fast = _native_matmul(a, b)
    return a @ b if fast is None else fast(a, b, None)
