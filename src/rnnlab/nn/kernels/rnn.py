"""Elman RNN over a sequence: h_t = φ(xw_t + W h_{t-1}), with a hand-written backward."""

from __future__ import annotations

import torch
from torch import Tensor

from rnnlab.nn.kernels.common import loop_for, matmul, needs_grad


def forward_loop(xw: Tensor, h0: Tensor, w_hh: Tensor, relu: bool) -> Tensor:
    """hs (T+1, B, H), h0 in slot 0: h_t = φ(xw_t + W h_{t-1}). The native `rnn_forward` is its twin."""
    hs = xw.new_empty(xw.size(0) + 1, *xw.shape[1:])
    hs[0] = h0
    w_t = w_hh.t()
    for x_t, h, h_new in zip(xw.unbind(0), hs.unbind(0), hs[1:].unbind(0)):
        torch.addmm(x_t, h, w_t, out=h_new)
        h_new.relu_() if relu else h_new.tanh_()
    return hs


def differentiable_backward(dhs: Tensor, h0: Tensor, w_hh: Tensor, hs: Tensor, relu: bool) -> tuple[Tensor, Tensor, Tensor]:
    """The backward below in differentiable ops, for gradients of gradients. φ' comes from the
    saved outputs hs, which autograd connects back to the inputs, so nothing is recomputed.
    ReLU's backward is torch's own op: its (zero) derivative in h keeps the graph connected."""
    dh, dpre = torch.zeros_like(h0), []
    for dh_t, h_t in zip(reversed(dhs.unbind(0)), reversed(hs.unbind(0))):
        total = dh_t + dh
        dpre.append(torch.ops.aten.threshold_backward(total, h_t, 0) if relu else total * (1 - h_t * h_t))
        dh = dpre[-1] @ w_hh
    dpre = torch.stack(dpre[::-1])
    h_prev = torch.cat([h0.unsqueeze(0), hs[:-1]])
    return dpre, dh, dpre.flatten(0, 1).t() @ h_prev.flatten(0, 1)


class _RNNSequence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xw: Tensor, h0: Tensor, w_hh: Tensor, relu: bool) -> Tensor:
        hs = loop_for(xw, "rnn_forward", forward_loop)(xw, h0.contiguous(), w_hh, relu)[1:]  # (T, B, H)
        ctx.relu = relu
        ctx.save_for_backward(h0, w_hh, hs)
        return hs

    @staticmethod
    def backward(ctx, dhs: Tensor):
        h0, w_hh, hs = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: a backward autograd can differentiate
            return *differentiable_backward(dhs, h0, w_hh, hs, ctx.relu), None
        # φ'(pre) from φ's output, for every step at once: tanh' = 1 - h², relu' = [h > 0].
        dphi = (hs > 0).to(hs.dtype) if ctx.relu else 1 - hs * hs
        dpre = torch.empty_like(hs)
        dh = torch.zeros_like(h0)
        for t in range(hs.size(0) - 1, -1, -1):
            torch.mul(dhs[t] + dh, dphi[t], out=dpre[t])
            dh = dpre[t] @ w_hh  # back through W to h_{t-1}
        h_prev = torch.cat([h0.unsqueeze(0), hs[:-1]])
        dw = matmul(dpre.flatten(0, 1).t(), h_prev.flatten(0, 1))  # Σ_t dpre_tᵀ h_{t-1}, one matmul
        return dpre, dh, dw, None


def rnn_sequence(xw: Tensor, h0: Tensor, w_hh: Tensor, nonlinearity: str = "tanh") -> Tensor:
    """xw: (time, batch, H) = U x + b for every step; h0: (batch, H); w_hh: (H, H).

    Returns h for every step: (time, batch, H).
    """
    relu = nonlinearity == "relu"
    if needs_grad(xw, h0, w_hh):
        return _RNNSequence.apply(xw.contiguous(), h0, w_hh, relu)
    xw = xw.contiguous()
    return loop_for(xw, "rnn_forward", forward_loop)(xw, h0.contiguous(), w_hh, relu)[1:]
