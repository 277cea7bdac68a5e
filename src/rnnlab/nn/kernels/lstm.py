"""LSTM over a sequence with a hand-written backward (gate order i, f, g, o as torch.nn).

Each pass exists twice with the same contract and the same math: in C++ (`native/cells.cpp`, one
fused pointwise pass per step, used on CPU when it compiled) and below in PyTorch ops (any device).
The PyTorch loops zip over `unbind(0)` views made once, not `tensor[t]` per step: on small sizes
per-op overhead is the cost, and every index is one more op. A third backward,
`differentiable_backward`, plain ops over the kernel's outputs, runs only when a graph of the
backward is requested (create_graph=True: gradient penalties, Hessian-vector products).
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnlab.nn.kernels import native
from rnnlab.nn.kernels.common import loop_for, matmul, needs_grad


def forward_loop(xw: Tensor, h0: Tensor, c0: Tensor, w_hh: Tensor, keep: bool) -> list[Tensor]:
    """[hs, cs, acts, tanh(cs)]: hs, cs (T+1, B, H) with the initial state in slot 0 (so h_{t-1} for
    every t is a view); if keep, the activated gates (T, B, 4H) and tanh(c_t) (T, B, H), else Nones."""
    T, B, G = xw.shape
    H = G // 4
    hs, cs = xw.new_empty(T + 1, B, H), xw.new_empty(T + 1, B, H)
    hs[0], cs[0] = h0, c0
    w_t = w_hh.t()
    if not keep:  # inference: each step's gates stay in one cache-hot buffer
        for x_t, h, c, h_new, c_new in zip(xw.unbind(0), hs.unbind(0), cs.unbind(0), hs[1:].unbind(0), cs[1:].unbind(0)):
            a = torch.addmm(x_t, h, w_t)
            a_if, a_g, a_o = a.split([2 * H, H, H], 1)
            a_if.sigmoid_(), a_g.tanh_(), a_o.sigmoid_()
            i, f = a_if.chunk(2, 1)
            torch.mul(f, c, out=c_new).addcmul_(i, a_g)
            torch.mul(a_o, torch.tanh(c_new), out=h_new)
        return [hs, cs, None, None]
    acts, tcs = torch.empty_like(xw), xw.new_empty(T, B, H)
    sig_if, tanh_g, sig_o = (v.unbind(0) for v in acts.split([2 * H, H, H], 2))
    i, f, g, o = (v.unbind(0) for v in acts.split(H, 2))
    steps = zip(xw.unbind(0), acts.unbind(0), sig_if, tanh_g, sig_o, i, f, g, o,
                hs.unbind(0), cs.unbind(0), hs[1:].unbind(0), cs[1:].unbind(0), tcs.unbind(0))
    for x_t, a, a_if, a_g, a_o, i_t, f_t, g_t, o_t, h, c, h_new, c_new, tc in steps:
        torch.addmm(x_t, h, w_t, out=a)
        a_if.sigmoid_(), a_g.tanh_(), a_o.sigmoid_()
        torch.mul(f_t, c, out=c_new).addcmul_(i_t, g_t)  # c_t = f c_{t-1} + i g
        torch.mul(o_t, torch.tanh(c_new, out=tc), out=h_new)  # h_t = o tanh(c_t)
    return [hs, cs, acts, tcs]


def differentiable_backward(
    dhs: Tensor | None, dcs: Tensor | None, dacts: Tensor | None, h0: Tensor, c0: Tensor, w_hh: Tensor,
    h_out: Tensor, c_out: Tensor, acts: Tensor,
) -> list[Tensor]:
    """[d gates_pre, dh0, dc0, dW] as `backward_loop` (+ dW), in ops autograd can differentiate, for
    gradients of gradients (create_graph=True). It reads only the kernel's outputs h_out, c_out and
    acts (the activated gates, a hidden output), so autograd connects it back to the inputs and
    nothing is recomputed; dacts is a gradient reaching acts themselves (only in such a graph's
    backward). A None gradient is zero."""
    T, B, G = acts.shape
    H = G // 4
    h_prev = torch.cat([h0.unsqueeze(0), h_out[:-1]])
    c_prev = torch.cat([c0.unsqueeze(0), c_out[:-1]])
    tcs = torch.tanh(c_out)
    # σ' = s(1 - s) for i, f, o; tanh' = 1 - g² for g.
    slope = torch.cat([acts[..., : 2 * H] * (1 - acts[..., : 2 * H]), 1 - acts[..., 2 * H : 3 * H] ** 2,
                       acts[..., 3 * H :] * (1 - acts[..., 3 * H :])], 2)
    i, f, g, o = acts.split(H, 2)
    dh, dc, dpre = h0.new_zeros(B, H), h0.new_zeros(B, H), []
    for t in range(T - 1, -1, -1):
        dh = dh if dhs is None else dh + dhs[t]
        dc = dc + dh * o[t] * (1 - tcs[t] * tcs[t]) + (0 if dcs is None else dcs[t])
        dact = torch.cat([dc * g[t], dc * c_prev[t], dc * i[t], dh * tcs[t]], 1)  # d(i, f, g, o)
        dpre.append((dact if dacts is None else dact + dacts[t]) * slope[t])
        dc = dc * f[t]  # to c_{t-1}
        dh = dpre[-1] @ w_hh  # to h_{t-1}
    dpre = torch.stack(dpre[::-1])
    return [dpre, dh, dc, dpre.flatten(0, 1).t() @ h_prev.flatten(0, 1)]


def backward_loop(dhs: Tensor, dcs: Tensor, w_hh: Tensor, acts: Tensor, cs: Tensor, tcs: Tensor) -> list[Tensor]:
    """[d gates_pre (T, B, 4H), dh0, dc0] from the gradients reaching every h_t and c_t."""
    T, B, G = acts.shape
    H = G // 4
    i, f, g, o = acts.split(H, 2)
    # Everything that depends on forward values only, for all steps at once:
    #   dc_t += dh_t ⊙ o ⊙ (1 - tanh²c_t)
    #   d(i, f, g)_pre = dc_t ⊙ k_(i, f, g),  do_pre = dh_t ⊙ k_o
    # with σ' = s - s², tanh' = 1 - g².
    dc_from_dh = o * (1 - tcs * tcs)
    k = acts - acts * acts  # σ'(gates); the g block is fixed below
    k[:, :, 2 * H : 3 * H] = 1 - g * g
    k_i, k_f, k_g, k_o = k.split(H, 2)
    k_i.mul_(g), k_f.mul_(cs[:-1]), k_g.mul_(i), k_o.mul_(tcs)
    dgates = torch.empty_like(acts)
    k_ifg = k.view(T, B, 4, H)[:, :, :3].unbind(0)
    dgates_ifg = dgates.view(T, B, 4, H)[:, :, :3].unbind(0)
    dgates_o = dgates[:, :, 3 * H :].unbind(0)
    dh, dc = dhs.new_zeros(B, H), dhs.new_zeros(B, H)
    steps = zip(dhs.unbind(0), dcs.unbind(0), dc_from_dh.unbind(0), k_ifg, k_o.unbind(0), f.unbind(0),
                dgates.unbind(0), dgates_ifg, dgates_o)
    for dh_t, dc_t, kc, k3, ko, f_t, dg, dg3, dgo in reversed(list(steps)):
        dh = dh_t + dh
        dc = torch.addcmul(dc_t + dc, dh, kc)
        torch.mul(k3, dc.unsqueeze(1), out=dg3)
        torch.mul(ko, dh, out=dgo)
        dc = dc * f_t  # to c_{t-1}
        dh = dg @ w_hh  # to h_{t-1}
    return [dgates, dh, dc]


class _LSTMSequence(torch.autograd.Function):
    """The LSTM over a sequence: from xw = U x + b (w_ih None), or from x itself with the projection
    inside the native loop (`lstm_sequence_from_input`); the backward then also returns dx, dU, db."""

    @staticmethod
    def forward(ctx, x: Tensor, h0: Tensor, c0: Tensor, w_hh: Tensor, w_ih: Tensor | None = None,
                bias: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        h0, c0 = h0.contiguous(), c0.contiguous()
        if w_ih is None:
            hs, cs, acts, tcs = loop_for(x, "lstm_forward", forward_loop)(x, h0, c0, w_hh, True)
        else:
            hs, cs, acts, tcs = native.ops().lstm_forward_input(x, w_ih, bias, h0, c0, w_hh, True)
        ctx.backward_loop = loop_for(x, "lstm_backward", backward_loop)  # the forward's twin
        h_out, c_out = hs[1:], cs[1:]
        # acts is returned (and dropped by lstm_sequence) so that a graph of the backward can reach the
        # inputs through it; it is saved anyway, so this costs no memory. Unused outputs get None.
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(w_hh, acts, hs, cs, tcs, h0, c0, h_out, c_out, x, w_ih)
        ctx.projects, ctx.has_bias = w_ih is not None, bias is not None
        return h_out, c_out, acts

    @staticmethod
    def backward(ctx, dhs: Tensor | None, dcs: Tensor | None, dacts: Tensor | None):
        w_hh, acts, hs, cs, tcs, h0, c0, h_out, c_out, x, w_ih = ctx.saved_tensors
        if torch.is_grad_enabled() or dacts is not None:  # create_graph=True, or inside such a graph's backward
            dgates, dh, dc, dw = differentiable_backward(dhs, dcs, dacts, h0, c0, w_hh, h_out, c_out, acts)
            mm = torch.matmul
        else:
            dhs = torch.zeros_like(h_out) if dhs is None else dhs.contiguous()
            dcs = torch.zeros_like(c_out) if dcs is None else dcs.contiguous()
            dgates, dh, dc = ctx.backward_loop(dhs, dcs, w_hh, acts, cs, tcs)
            dw = matmul(dgates.flatten(0, 1).t(), hs[:-1].flatten(0, 1))  # Σ_t dgates_tᵀ h_{t-1}, one matmul
            mm = matmul
        if not ctx.projects:
            return dgates, dh, dc, dw, None, None
        flat, need = dgates.flatten(0, 1), ctx.needs_input_grad
        dx = mm(flat, w_ih).view_as(x) if need[0] else None  # dgates U
        dw_ih = mm(flat.t(), x.flatten(0, 1)) if need[4] else None  # Σ_t dgates_tᵀ x_t
        db = flat.sum(0) if ctx.has_bias and need[5] else None
        return dx, dh, dc, dw, dw_ih, db


def lstm_sequence(xw: Tensor, h0: Tensor, c0: Tensor, w_hh: Tensor) -> tuple[Tensor, Tensor]:
    """xw: (time, batch, 4H) = U x + b for every step; h0, c0: (batch, H); w_hh: (4H, H).

    Returns (h, c) for every step, each (time, batch, H).
    """
    xw = xw.contiguous()
    if needs_grad(xw, h0, c0, w_hh):
        hs, cs, _ = _LSTMSequence.apply(xw, h0, c0, w_hh)
        return hs, cs
    hs, cs, _, _ = loop_for(xw, "lstm_forward", forward_loop)(xw, h0.contiguous(), c0.contiguous(), w_hh, False)
    return hs[1:], cs[1:]


def lstm_sequence_from_input(
    x: Tensor, w_ih: Tensor, bias: Tensor | None, h0: Tensor, c0: Tensor, w_hh: Tensor
) -> tuple[Tensor, Tensor] | None:
    """`lstm_sequence(linear(x, w_ih, bias), h0, c0, w_hh)` with the input projection folded into the
    loop, where that is faster: CPU float32 on the native loop's AVX-512 step kernel (each step one
    product [x_t, h_{t-1}] [W_ih, W_hh]ᵀ, and no (time, batch, 4H) projection in memory). x: (time,
    batch, I). Returns (h, c), each (time, batch, H), or None where it does not apply (then project
    and call `lstm_sequence`)."""
    if x.device.type != "cpu" or x.dtype != torch.float32 or not native.has_step_kernel():
        return None
    x = x.contiguous()
    if needs_grad(x, w_ih, bias, h0, c0, w_hh):
        hs, cs, _ = _LSTMSequence.apply(x, h0, c0, w_hh, w_ih, bias)
        return hs, cs
    hs, cs, _, _ = native.ops().lstm_forward_input(x, w_ih, bias, h0.contiguous(), c0.contiguous(), w_hh, False)
    return hs[1:], cs[1:]
