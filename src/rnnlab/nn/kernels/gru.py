"""GRU over a sequence with a hand-written backward (gate order r, z, n as torch.nn).

As for the LSTM, each pass exists in C++ (`native/cells.cpp`, CPU) and below in PyTorch ops,
with the same contract and math; `differentiable_backward` serves create_graph=True, as for the LSTM.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnlab.nn.kernels.common import loop_for, matmul, needs_grad


def forward_loop(xw: Tensor, h0: Tensor, w_hh: Tensor, b_hh: Tensor | None, keep: bool) -> list[Tensor]:
    """[hs (T+1, B, H) with h0 in slot 0, W h_{t-1} + b_h (T, B, 3H), r|z (T, B, 2H), n (T, B, H)];
    without keep only hs is complete (the others hold the last step)."""
    T, B, G = xw.shape
    H = G // 3
    hs = xw.new_empty(T + 1, B, H)
    hs[0] = h0
    shape = (T,) if keep else (1,)  # inference: one buffer per quantity, reused at every step
    hw, rz, ns = xw.new_empty(*shape, B, 3 * H), xw.new_empty(*shape, B, 2 * H), xw.new_empty(*shape, B, H)
    w_t = w_hh.t()
    every = (lambda v: v.unbind(0)) if keep else (lambda v: [v[0]] * T)
    for x_t, h, h_new, hw_t, rz_t, n in zip(xw.unbind(0), hs.unbind(0), hs[1:].unbind(0), every(hw), every(rz), every(ns)):
        torch.addmm(b_hh, h, w_t, out=hw_t) if b_hh is not None else torch.mm(h, w_t, out=hw_t)
        torch.add(x_t[:, : 2 * H], hw_t[:, : 2 * H], out=rz_t).sigmoid_()
        torch.addcmul(x_t[:, 2 * H :], rz_t[:, :H], hw_t[:, 2 * H :], out=n).tanh_()
        torch.sub(h, n, out=h_new).mul_(rz_t[:, H:]).add_(n)  # h_t = n + z (h_{t-1} - n)
    return [hs, hw, rz, ns]


def differentiable_backward(
    dhs: Tensor | None, drz: Tensor | None, dns: Tensor | None, h0: Tensor, w_hh: Tensor, b_hh: Tensor | None,
    h_out: Tensor, rz: Tensor, ns: Tensor,
) -> list[Tensor | None]:
    """[dxw, dh0, dW, db] as the fast backward, in ops autograd can differentiate, for gradients of
    gradients (create_graph=True). It reads only the kernel's outputs h_out, r|z and n (the latter
    two hidden outputs) and its inputs, so autograd connects it back to the inputs; drz, dns are
    gradients reaching r|z and n themselves (only in such a graph's backward). None is zero."""
    T, B, H = ns.shape
    h_prev = torch.cat([h0.unsqueeze(0), h_out[:-1]])
    hw_n = F.linear(h_prev, w_hh[2 * H :], None if b_hh is None else b_hh[2 * H :])  # W_n h_{t-1} + b_hn
    r, z = rz.chunk(2, 2)
    dh, dxw, dhw = h0.new_zeros(B, H), [], []
    for t in range(T - 1, -1, -1):
        dh = dh if dhs is None else dh + dhs[t]
        d_n = dh * (1 - z[t]) + (0 if dns is None else dns[t])
        d_z = dh * (h_prev[t] - ns[t]) + (0 if drz is None else drz[t, :, H:])
        dn_pre = d_n * (1 - ns[t] * ns[t])
        d_r = dn_pre * hw_n[t] + (0 if drz is None else drz[t, :, :H])
        dr_pre, dz_pre = d_r * r[t] * (1 - r[t]), d_z * z[t] * (1 - z[t])
        dxw.append(torch.cat([dr_pre, dz_pre, dn_pre], 1))
        dhw.append(torch.cat([dr_pre, dz_pre, dn_pre * r[t]], 1))  # d(W h_{t-1} + b_h)
        dh = dh * z[t] + dhw[-1] @ w_hh  # to h_{t-1}: directly through z, and through W
    dxw, dhw = torch.stack(dxw[::-1]).flatten(0, 1), torch.stack(dhw[::-1]).flatten(0, 1)
    db = None if b_hh is None else dhw.sum(0)
    return [dxw.view(T, B, 3 * H), dh, dhw.t() @ h_prev.flatten(0, 1), db]


def backward_loop(dhs: Tensor, w_hh: Tensor, hw: Tensor, rz: Tensor, ns: Tensor, hs: Tensor) -> list[Tensor]:
    """[d(W h + b_h) (T, B, 3H), d n_pre (T, B, H), dh0] from the gradients reaching every h_t."""
    T, B, G = hw.shape
    H = G // 3
    r, z = rz.chunk(2, 2)
    # Gate derivatives for all steps at once (dh = the total gradient reaching h_t):
    # dn_pre = dh ⊙ (1-z)(1-n²);  dr_pre = dn_pre ⊙ (W_n h + b_hn) r(1-r);  dz_pre = dh ⊙ (h_{t-1}-n) z(1-z)
    k_n = (1 - z) * (1 - ns * ns)
    k_r = hw[:, :, 2 * H :] * (r - r * r)
    k_z = (hs[:-1] - ns) * (z - z * z)
    dhw, dn_pre = torch.empty_like(hw), torch.empty_like(ns)
    dh = dhs.new_zeros(B, H)
    for t in range(T - 1, -1, -1):
        dh = dhs[t] + dh
        d_n = torch.mul(dh, k_n[t], out=dn_pre[t])
        torch.mul(d_n, k_r[t], out=dhw[t, :, :H])
        torch.mul(dh, k_z[t], out=dhw[t, :, H : 2 * H])
        torch.mul(d_n, r[t], out=dhw[t, :, 2 * H :])
        dh = torch.addmm(dh * z[t], dhw[t], w_hh)  # to h_{t-1}: directly through z, and through W
    return [dhw, dn_pre, dh]


class _GRUSequence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xw: Tensor, h0: Tensor, w_hh: Tensor, b_hh: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        loop = loop_for(xw, "gru_forward", forward_loop)
        hs, hw, rz, ns = loop(xw, h0.contiguous(), w_hh, b_hh, True)
        ctx.backward_loop = loop_for(xw, "gru_backward", backward_loop)  # the forward's twin
        ctx.has_bias = b_hh is not None
        h_out = hs[1:]
        # rz and ns are returned (and dropped by gru_sequence) so that a graph of the backward can reach
        # the inputs through them; they are saved anyway, so this costs no memory. Unused outputs get None.
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(w_hh, hw, rz, ns, hs, h0, b_hh, h_out)
        return h_out, rz, ns

    @staticmethod
    def backward(ctx, dhs: Tensor | None, drz: Tensor | None, dns: Tensor | None):
        w_hh, hw, rz, ns, hs, h0, b_hh, h_out = ctx.saved_tensors
        if torch.is_grad_enabled() or drz is not None or dns is not None:  # create_graph=True, or inside its backward
            return tuple(differentiable_backward(dhs, drz, dns, h0, w_hh, b_hh, h_out, rz, ns))
        dhs = torch.zeros_like(h_out) if dhs is None else dhs.contiguous()
        dhw, dn_pre, dh = ctx.backward_loop(dhs, w_hh, hw, rz, ns, hs)
        H = dn_pre.size(2)
        dxw = torch.cat([dhw[:, :, : 2 * H], dn_pre], 2)
        dhw_flat = dhw.flatten(0, 1)
        dw = matmul(dhw_flat.t(), hs[:-1].flatten(0, 1))  # Σ_t dhw_tᵀ h_{t-1}, one matmul
        db = dhw_flat.sum(0) if ctx.has_bias else None
        return dxw, dh, dw, db


def gru_sequence(xw: Tensor, h0: Tensor, w_hh: Tensor, b_hh: Tensor | None) -> Tensor:
    """xw: (time, batch, 3H) = U x + b_i for every step; h0: (batch, H); w_hh: (3H, H); b_hh: (3H,).

    Returns h for every step: (time, batch, H).
    """
    xw = xw.contiguous()
    if needs_grad(xw, h0, w_hh, b_hh):
        return _GRUSequence.apply(xw, h0, w_hh, b_hh)[0]
    return loop_for(xw, "gru_forward", forward_loop)(xw, h0.contiguous(), w_hh, b_hh, False)[0][1:]
