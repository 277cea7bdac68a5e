"""LSTM over a sequence with a hand-written backward (gate order i, f, g, o as torch.nn)."""

from __future__ import annotations

import torch
from torch import Tensor

from rnnlab.nn.kernels.common import needs_grad


class _LSTMSequence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xw: Tensor, h0: Tensor, c0: Tensor, w_hh: Tensor) -> tuple[Tensor, Tensor]:
        T, B, G = xw.shape
        H = G // 4
        acts = torch.empty_like(xw)  # activated gates i, f, g, o: (T, B, 4H)
        # Slot 0 holds the initial state, so h_{t-1} for every t is a view (no cat in backward).
        hs, cs = xw.new_empty(T + 1, B, H), xw.new_empty(T + 1, B, H)
        hs[0], cs[0] = h0, c0
        tcs = xw.new_empty(T, B, H)  # tanh(c_t), reused by backward
        w_t = w_hh.t()
        for t, x_t in enumerate(xw.unbind(0)):
            a = torch.addmm(x_t, hs[t], w_t, out=acts[t])
            a[:, : 2 * H].sigmoid_()
            a[:, 2 * H : 3 * H].tanh_()
            a[:, 3 * H :].sigmoid_()
            i, f, g, o = a.chunk(4, 1)
            torch.mul(f, cs[t], out=cs[t + 1]).addcmul_(i, g)  # c_t = f c_{t-1} + i g
            torch.mul(o, torch.tanh(cs[t + 1], out=tcs[t]), out=hs[t + 1])  # h_t = o tanh(c_t)
        ctx.save_for_backward(w_hh, acts, hs, cs, tcs)
        return hs[1:], cs[1:]

    @staticmethod
    def backward(ctx, dhs: Tensor, dcs: Tensor):
        w_hh, acts, hs, cs, tcs = ctx.saved_tensors
        T, B, G = acts.shape
        H = G // 4
        i, f, g, o = acts.chunk(4, 2)
        # Everything that depends on forward values only, for all steps at once:
        #   dc_t += dh_t ⊙ o ⊙ (1 - tanh²c_t)
        #   d(i, f, g)_pre = dc_t ⊙ k_(i, f, g),  do_pre = dh_t ⊙ k_o
        # with σ' = s - s², tanh' = 1 - g².
        dc_from_dh = torch.addcmul(o, o, tcs * tcs, value=-1)
        k = torch.addcmul(acts, acts, acts, value=-1)  # σ'(gates); the g block is fixed below
        torch.addcmul(torch.ones_like(g), g, g, value=-1, out=k[:, :, 2 * H : 3 * H])
        k_i, k_f, k_g, k_o = k.chunk(4, 2)
        k_i.mul_(g), k_f.mul_(cs[:-1]), k_g.mul_(i), k_o.mul_(tcs)
        k_ifg = k.view(T, B, 4, H)[:, :, :3]
        dgates = torch.empty_like(acts)
        dgates_ifg, dgates_o = dgates.view(T, B, 4, H)[:, :, :3], dgates[:, :, 3 * H :]
        dh, dc = torch.zeros_like(hs[0]), torch.zeros_like(cs[0])
        for t in range(T - 1, -1, -1):
            dh = dhs[t] + dh
            dc = torch.addcmul(dcs[t] + dc, dh, dc_from_dh[t])
            torch.mul(k_ifg[t], dc.unsqueeze(1), out=dgates_ifg[t])
            torch.mul(k_o[t], dh, out=dgates_o[t])
            dc = dc * f[t]  # to c_{t-1}
            dh = dgates[t] @ w_hh  # to h_{t-1}
        dw = dgates.flatten(0, 1).t() @ hs[:-1].flatten(0, 1)  # Σ_t dgates_tᵀ h_{t-1}, one matmul
        return dgates, dh, dc, dw


def _lstm_inference(xw: Tensor, h0: Tensor, c0: Tensor, w_hh: Tensor) -> tuple[Tensor, Tensor]:
    """The forward loop alone: no gates kept for a backward, and each step's gates stay in cache."""
    T, B, G = xw.shape
    H = G // 4
    hs, cs = xw.new_empty(T, B, H), xw.new_empty(T, B, H)
    h, c, w_t = h0, c0, w_hh.t()
    for t, x_t in enumerate(xw.unbind(0)):
        a = torch.addmm(x_t, h, w_t)
        a[:, : 2 * H].sigmoid_()
        a[:, 2 * H : 3 * H].tanh_()
        a[:, 3 * H :].sigmoid_()
        i, f, g, o = a.chunk(4, 1)
        c = torch.mul(f, c, out=cs[t]).addcmul_(i, g)
        h = torch.mul(o, torch.tanh(c), out=hs[t])
    return hs, cs


def lstm_sequence(xw: Tensor, h0: Tensor, c0: Tensor, w_hh: Tensor) -> tuple[Tensor, Tensor]:
    """xw: (time, batch, 4H) = U x + b for every step; h0, c0: (batch, H); w_hh: (4H, H).

    Returns (h, c) for every step, each (time, batch, H).
    """
    if needs_grad(xw, h0, c0, w_hh):
        return _LSTMSequence.apply(xw.contiguous(), h0, c0, w_hh)
    return _lstm_inference(xw, h0, c0, w_hh)
