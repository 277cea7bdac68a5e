"""rnnlab's Recurrent against torch.nn.RNN/LSTM/GRU with the same weights: outputs, final states,
and the gradient of every parameter and of the input, through both the hand-written BPTT kernels
(fused=True) and autograd's unrolled loop (fused=False)."""

from __future__ import annotations

import os
import shutil

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnlab.nn import Recurrent
from rnnlab.nn.kernels import native

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
CELLS = {  # name: (torch class, extra torch kwargs)
    "rnn_tanh": (torch.nn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (torch.nn.RNN, {"nonlinearity": "relu"}),
    "lstm": (torch.nn.LSTM, {}),
    "gru": (torch.nn.GRU, {}),
}
TOL = {torch.float64: dict(atol=1e-10, rtol=0), torch.float32: dict(atol=1e-5, rtol=1e-5)}
B, T, I, H = 4, 7, 5, 6


@pytest.fixture
def kernel_path():
    """Choose the kernels' inner loops for one test; restores the default afterwards."""
    yield lambda path: native.set_enabled(path == "native")
    native.set_enabled(True)


def test_native_kernels_compile():
    """The compiled loops must really be there where a compiler is, or the 'native' cases above
    would silently test the PyTorch loops twice."""
    if shutil.which("c++") is None or os.environ.get("RNNLAB_NATIVE") == "0":
        pytest.skip("no C++ compiler (or RNNLAB_NATIVE=0): the PyTorch loops run instead")
    assert native.ops() is not None


def as_tuple(state):
    return state if isinstance(state, tuple) else (state,)


def run_torch(module, x, lengths, state):
    """torch.nn with padding done the torch way: packed sequences."""
    if lengths is None:
        return module(x, state)
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, new_state = module(packed, state)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.size(1))
    return out, new_state


def loss_of(out, state):
    # A loss that weighs every output and every final-state entry differently, so a wrong
    # gradient anywhere shows.
    torch.manual_seed(1)
    total = (out * torch.randn(out.shape, dtype=out.dtype, device=out.device)).sum()
    for s in as_tuple(state):
        total = total + (s * torch.randn(s.shape, dtype=s.dtype, device=s.device)).sum()
    return total


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("path", ["native", "python", "autograd"])
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("cell", list(CELLS))
def test_matches_torch_nn(cell, num_layers, bidirectional, with_lengths, path, dtype, device, kernel_path):
    """path: the hand-written BPTT through the compiled CPU loops (native) or PyTorch ops (python),
    or autograd's unrolled graph of the cell's step."""
    torch.manual_seed(0)
    cls, kwargs = CELLS[cell]
    ref = cls(I, H, num_layers, batch_first=True, bidirectional=bidirectional, **kwargs).to(device, dtype)
    kernel_path(path)
    ours = Recurrent.from_torch(ref, fused=path != "autograd")
    D = 2 if bidirectional else 1
    x = torch.randn(B, T, I, device=device, dtype=dtype)
    lengths = torch.tensor([T, 3, 1, 5]) if with_lengths else None
    n_states = 2 if cell == "lstm" else 1
    init = tuple(torch.randn(num_layers * D, B, H, device=device, dtype=dtype) for _ in range(n_states))
    init = init if n_states == 2 else init[0]

    x_ref, x_ours = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_ref, state_ref = run_torch(ref, x_ref, lengths, init)
    out_ours, state_ours = ours(x_ours, init, lengths)
    torch.testing.assert_close(out_ours, out_ref, **TOL[dtype])
    for s_ours, s_ref in zip(as_tuple(state_ours), as_tuple(state_ref), strict=True):
        torch.testing.assert_close(s_ours, s_ref, **TOL[dtype])

    with torch.no_grad():  # the inference path keeps nothing for a backward; same numbers
        out_nograd, state_nograd = ours(x, init, lengths)
    torch.testing.assert_close(out_nograd, out_ref.detach(), **TOL[dtype])
    for s_ours, s_ref in zip(as_tuple(state_nograd), as_tuple(state_ref), strict=True):
        torch.testing.assert_close(s_ours, s_ref.detach(), **TOL[dtype])

    loss_of(out_ref, state_ref).backward()
    loss_of(out_ours, state_ours).backward()
    torch.testing.assert_close(x_ours.grad, x_ref.grad, **TOL[dtype])
    for name, p in ours._torch_names():
        torch.testing.assert_close(p.grad, getattr(ref, name).grad, **TOL[dtype], msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_initial_state_gradient_matches_torch(cell, device):
    torch.manual_seed(0)
    cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
    ref = cls(I, H, 2, batch_first=True, bidirectional=True).to(device, torch.float64)
    ours = Recurrent.from_torch(ref)
    x = torch.randn(B, T, I, device=device, dtype=torch.float64)
    n = 2 if cell == "lstm" else 1
    init_ref = [torch.randn(4, B, H, device=device, dtype=torch.float64, requires_grad=True) for _ in range(n)]
    init_ours = [s.detach().clone().requires_grad_() for s in init_ref]
    pack = (lambda s: tuple(s)) if n == 2 else (lambda s: s[0])
    loss_of(*ref(x, pack(init_ref))).backward()
    loss_of(*ours(x, pack(init_ours))).backward()
    for a, b in zip(init_ours, init_ref):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-10, rtol=0)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_time_major_layout_matches_torch(cell):
    torch.manual_seed(0)
    cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
    ref = cls(I, H, 1, batch_first=False).double()
    ours = Recurrent.from_torch(ref)
    assert ours.batch_first is False
    x = torch.randn(T, B, I, dtype=torch.float64)
    torch.testing.assert_close(ours(x)[0], ref(x)[0], atol=1e-10, rtol=0)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_to_torch_round_trip(cell, bidirectional):
    torch.manual_seed(0)
    ours = Recurrent(cell, I, H, num_layers=2, bidirectional=bidirectional, dropout=0.25).double()
    ref = ours.to_torch()
    assert ref.num_layers == 2 and ref.bidirectional == bidirectional and ref.dropout == 0.25
    assert ref.batch_first is True
    x = torch.randn(B, T, I, dtype=torch.float64)
    ours.eval(), ref.eval()
    torch.testing.assert_close(ours(x)[0], ref(x)[0], atol=1e-10, rtol=0)
    back = Recurrent.from_torch(ref)
    for (name, p), (_, q) in zip(ours.named_parameters(), back.named_parameters(), strict=True):
        assert torch.equal(p, q), name
