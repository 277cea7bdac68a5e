"""Each cell, one step, against torch.nn's cell; gradcheck of the step and of the fused sequence."""

from __future__ import annotations

import pytest
import torch

from rnnlab.nn import GRUCell, LSTMCell, RNNCell, make_cell
from rnnlab.nn.kernels import native

PAIRS = [
    (lambda: RNNCell(3, 4, nonlinearity="tanh"), lambda: torch.nn.RNNCell(3, 4, nonlinearity="tanh")),
    (lambda: RNNCell(3, 4, nonlinearity="relu"), lambda: torch.nn.RNNCell(3, 4, nonlinearity="relu")),
    (lambda: LSTMCell(3, 4), lambda: torch.nn.LSTMCell(3, 4)),
    (lambda: GRUCell(3, 4), lambda: torch.nn.GRUCell(3, 4)),
]
IDS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]


@pytest.mark.parametrize("make_ours,make_ref", PAIRS, ids=IDS)
def test_step_matches_torch_cell(make_ours, make_ref):
    torch.manual_seed(0)
    ours, ref = make_ours().double(), make_ref().double()
    with torch.no_grad():
        for name, p in ours.named_parameters():
            p.copy_(getattr(ref, name))
    x = torch.randn(5, 3, dtype=torch.float64)
    h = torch.randn(5, 4, dtype=torch.float64)
    state = (h, torch.randn(5, 4, dtype=torch.float64)) if isinstance(ours, LSTMCell) else h
    h_ours, s_ours = ours(x, state)
    s_ref = ref(x, state)
    if isinstance(ours, LSTMCell):
        torch.testing.assert_close(s_ours[0], s_ref[0], atol=1e-12, rtol=0)
        torch.testing.assert_close(s_ours[1], s_ref[1], atol=1e-12, rtol=0)
    else:
        torch.testing.assert_close(s_ours, s_ref, atol=1e-12, rtol=0)
    torch.testing.assert_close(h_ours, s_ref[0] if isinstance(ours, LSTMCell) else s_ref, atol=1e-12, rtol=0)


@pytest.mark.parametrize("make_ours", [p[0] for p in PAIRS], ids=IDS)
def test_gradcheck_step(make_ours):
    torch.manual_seed(0)
    cell = make_ours().double()
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    state = tuple(torch.randn(2, 4, dtype=torch.float64, requires_grad=True) for _ in range(cell.num_states))
    params = list(cell.parameters())

    def f(x, *tensors):
        n = cell.num_states
        with torch.nn.utils.stateless._reparametrize_module(cell, dict(zip([k for k, _ in cell.named_parameters()], tensors[n:]))):
            h, s = cell(x, tensors[:n] if n == 2 else tensors[0])
        return (h, *s) if n == 2 else (h,)

    assert torch.autograd.gradcheck(f, (x, *state, *params))


@pytest.mark.parametrize("use_native", [True, False], ids=["native", "python"])
@pytest.mark.parametrize("make_ours", [p[0] for p in PAIRS], ids=IDS)
def test_gradcheck_fused_sequence(make_ours, use_native):
    """The hand-written backward against finite differences, every input of the kernel."""
    native.set_enabled(use_native)
    torch.manual_seed(0)
    cell = make_ours().double()
    T, B = 4, 2
    xw = torch.randn(T, B, cell.num_gates * 4, dtype=torch.float64, requires_grad=True)
    state = tuple(torch.randn(B, 4, dtype=torch.float64, requires_grad=True) for _ in range(cell.num_states))
    names = [k for k, _ in cell.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in cell.parameters()]

    def f(xw, *tensors):
        n = cell.num_states
        with torch.nn.utils.stateless._reparametrize_module(cell, dict(zip(names, tensors[n:]))):
            return cell.fused_sequence(xw, tuple(tensors[:n]))

    try:
        assert torch.autograd.gradcheck(f, (xw, *state, *params))
    finally:
        native.set_enabled(True)


def test_make_cell_rejects_unknown_name():
    with pytest.raises(ValueError, match="cell='mamba'"):
        make_cell("mamba", 3, 4)


def test_uniform_init_bound_and_forget_bias():
    torch.manual_seed(0)
    cell = LSTMCell(10, 16)  # forget_bias=1.0 by default
    bound = 1 / 16**0.5
    for name in ("weight_ih", "weight_hh"):
        w = getattr(cell, name)
        assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound
    b = cell.bias_ih + cell.bias_hh
    assert torch.equal(b[16:32], torch.ones(16))  # the forget gate's total bias
    assert not torch.equal(b[:16], torch.ones(16))
    plain = LSTMCell(10, 16, forget_bias=None)
    assert (plain.bias_ih[16:32] + plain.bias_hh[16:32]).abs().max() <= 2 * bound


@pytest.mark.parametrize("cls", [RNNCell, LSTMCell, GRUCell])
def test_orthogonal_init(cls):
    torch.manual_seed(0)
    cell = cls(10, 8, init="orthogonal")
    for w in cell.weight_hh.split(8):  # each gate's W is orthogonal
        torch.testing.assert_close(w @ w.t(), torch.eye(8), atol=1e-5, rtol=0)
    for u in cell.weight_ih.split(8):  # Xavier-uniform bound sqrt(6 / (fan_in + fan_out))
        assert u.abs().max() <= (6 / (10 + 8)) ** 0.5
    bias = cell.bias_ih + cell.bias_hh
    expected = torch.zeros_like(bias)
    if cls is LSTMCell:
        expected[8:16] = 1.0
    assert torch.equal(bias, expected)


def test_no_bias():
    cell = GRUCell(3, 4, bias=False)
    assert cell.bias_ih is None and cell.bias_hh is None
    h, _ = cell(torch.randn(2, 3))
    assert h.shape == (2, 4)
