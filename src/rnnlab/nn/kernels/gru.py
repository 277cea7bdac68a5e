"""GRU over a sequence with a hand-written backward (gate order r, z, n as torch.nn)."""

from __future__ import annotations

import torch
from torch import Tensor

from rnnlab.nn.kernels.common import needs_grad


class _GRUSequence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xw: Tensor, h0: Tensor, w_hh: Tensor, b_hh: Tensor | None) -> Tensor:
        T, B, G = xw.shape
        H = G // 3
        hw = torch.empty_like(xw)  # W h_{t-1} + b_h: (T, B, 3H)
        rz = xw.new_empty(T, B, 2 * H)  # r_t, z_t
        ns, hs = xw.new_empty(T, B, H), xw.new_empty(T, B, H)
        w_t, h = w_hh.t(), h0
        for t, x_t in enumerate(xw.unbind(0)):
            hw_t = torch.addmm(b_hh, h, w_t, out=hw[t]) if b_hh is not None else torch.mm(h, w_t, out=hw[t])
            r_z = torch.add(x_t[:, : 2 * H], hw_t[:, : 2 * H], out=rz[t]).sigmoid_()
            n = torch.addcmul(x_t[:, 2 * H :], r_z[:, :H], hw_t[:, 2 * H :], out=ns[t]).tanh_()
            h = torch.sub(h, n, out=hs[t]).mul_(r_z[:, H:]).add_(n)  # h_t = n + z (h_{t-1} - n)
        ctx.save_for_backward(h0, w_hh, hw, rz, ns, hs)
        ctx.has_bias = b_hh is not None
        return hs

    @staticmethod
    def backward(ctx, dhs: Tensor):
        h0, w_hh, hw, rz, ns, hs = ctx.saved_tensors
        T, B, G = hw.shape
        H = G // 3
        r, z = rz.chunk(2, 2)
        h_prev = torch.cat([h0.unsqueeze(0), hs[:-1]])
        # Gate derivatives for all steps at once (dh = the total gradient reaching h_t):
        # dn_pre = dh ⊙ (1-z)(1-n²);  dr_pre = dn_pre ⊙ (W_n h + b_hn) r(1-r);  dz_pre = dh ⊙ (h_{t-1}-n) z(1-z)
        k_n = (1 - z) * (1 - ns * ns)
        k_r = hw[:, :, 2 * H :] * r * (1 - r)
        k_z = (h_prev - ns) * z * (1 - z)
        dhw = torch.empty_like(hw)  # gradient of W h_{t-1} + b_h
        dn_pre = torch.empty_like(ns)  # gradient of the candidate's pre-activation
        dh = torch.zeros_like(h0)
        for t in range(T - 1, -1, -1):
            dh = dhs[t] + dh
            d_n = torch.mul(dh, k_n[t], out=dn_pre[t])
            torch.mul(d_n, k_r[t], out=dhw[t, :, :H])
            torch.mul(dh, k_z[t], out=dhw[t, :, H : 2 * H])
            torch.mul(d_n, r[t], out=dhw[t, :, 2 * H :])
            dh = torch.addmm(dh * z[t], dhw[t], w_hh)  # to h_{t-1}: directly through z, and through W
        dxw = torch.cat([dhw[:, :, : 2 * H], dn_pre], 2)
        dhw_flat = dhw.flatten(0, 1)
        dw = dhw_flat.t() @ h_prev.flatten(0, 1)  # Σ_t dhw_tᵀ h_{t-1}, one matmul
        db = dhw_flat.sum(0) if ctx.has_bias else None
        return dxw, dh, dw, db


def gru_sequence(xw: Tensor, h0: Tensor, w_hh: Tensor, b_hh: Tensor | None) -> Tensor:
    """xw: (time, batch, 3H) = U x + b_i for every step; h0: (batch, H); w_hh: (3H, H); b_hh: (3H,).

    Returns h for every step: (time, batch, H).
    """
    if needs_grad(xw, h0, w_hh, b_hh):
        return _GRUSequence.apply(xw.contiguous(), h0, w_hh, b_hh)
    H = h0.size(1)  # forward alone: nothing kept for a backward, each step's gates stay in cache
    hs, h, w_t = xw.new_empty(xw.size(0), xw.size(1), H), h0, w_hh.t()
    for x_t, h_t in zip(xw.unbind(0), hs.unbind(0)):
        hw = torch.addmm(b_hh, h, w_t) if b_hh is not None else h @ w_t
        r_z = torch.add(x_t[:, : 2 * H], hw[:, : 2 * H]).sigmoid_()
        n = torch.addcmul(x_t[:, 2 * H :], r_z[:, :H], hw[:, 2 * H :]).tanh_()
        h = torch.sub(h, n, out=h_t).mul_(r_z[:, H:]).add_(n)
    return hs
