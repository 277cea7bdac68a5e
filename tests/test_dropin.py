"""Recurrent as a drop-in for torch.nn.RNN/LSTM/GRU beyond plain parity: gradients of gradients,
argument types, dtypes, unbatched and packed input, and the edge cases torch.nn accepts. Each
behaviour is checked against what torch.nn does in this process, not against a remembered answer."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn.utils.rnn import pack_padded_sequence

from rnnlab.nn import Recurrent, TorchRecurrent
from rnnlab.nn.kernels import gru_sequence, lstm_sequence, native, rnn_sequence
from rnnlab.nn.recurrent import RecurrentInputError

F64 = torch.float64
CELLS = {  # name: (our cell, torch class, kwargs for both)
    "rnn_tanh": ("rnn", nn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": ("rnn", nn.RNN, {"nonlinearity": "relu"}),
    "lstm": ("lstm", nn.LSTM, {}),
    "gru": ("gru", nn.GRU, {}),
}
PATHS = ["native", "python", "autograd"]  # compiled loops, PyTorch loops, autograd's unrolled graph


@pytest.fixture
def pair():
    """pair(cell, path, **torch_kwargs) -> (torch.nn module, Recurrent with its weights), float64."""

    def make(cell: str, path: str = "native", **kwargs):
        torch.manual_seed(0)
        _, cls, extra = CELLS[cell]
        ref = cls(**({"input_size": 3, "hidden_size": 4} | extra | kwargs)).double()
        native.set_enabled(path == "native")
        return ref, Recurrent.from_torch(ref, fused=path != "autograd")

    yield make
    native.set_enabled(True)


def as_tuple(state):
    return state if isinstance(state, tuple) else (state,)


def weighted_sum(out, state):
    """A scalar that weighs every output and state entry differently (a wrong gradient shows)."""
    g = torch.Generator().manual_seed(1)
    total = (out * torch.randn(out.shape, generator=g, dtype=out.dtype)).sum()
    for s in as_tuple(state):
        total = total + (s * torch.randn(s.shape, generator=g, dtype=s.dtype)).sum()
    return total


@pytest.mark.slow
# ---- 1. double backward ----
@pytest.mark.parametrize("path", ["native", "python"])
def test_kernels_gradgradcheck(path, pair):
    """Every input of every kernel, through the compiled and the PyTorch loops."""
    pair("gru", path)  # selects the loop
    torch.manual_seed(0)
    T, B, H = 3, 2, 3

    def rand(*shape):
        return torch.randn(*shape, dtype=F64, requires_grad=True)

    cases = [
        (lambda *a: rnn_sequence(*a, "tanh"), (rand(T, B, H), rand(B, H), rand(H, H))),
        (lambda *a: rnn_sequence(*a, "relu"), (rand(T, B, H), rand(B, H), rand(H, H))),
        (lstm_sequence, (rand(T, B, 4 * H), rand(B, H), rand(B, H), rand(4 * H, H))),
        (gru_sequence, (rand(T, B, 3 * H), rand(B, H), rand(3 * H, H), rand(3 * H))),
        (lambda *a: gru_sequence(*a, None), (rand(T, B, 3 * H), rand(B, H), rand(3 * H, H))),
    ]
    for kernel, inputs in cases:
        # gradgradcheck differentiates the create_graph backward against itself; that this backward
        # gives the fast backward's numbers is checked here.
        outs = as_tuple(kernel(*inputs))
        loss = weighted_sum(outs[0], outs[1:])
        fast = torch.autograd.grad(loss, inputs, retain_graph=True)
        graph = torch.autograd.grad(loss, inputs, create_graph=True)
        torch.testing.assert_close(graph, fast, atol=1e-12, rtol=0)
        assert torch.autograd.gradgradcheck(kernel, inputs)


# The native path in the quick run (pytest -m "not slow"); the other two in the full one.
@pytest.mark.parametrize("path", [p if p == "native" else pytest.param(p, marks=pytest.mark.slow) for p in PATHS])
@pytest.mark.parametrize("cell", list(CELLS))
def test_layer_gradgradcheck(cell, path, pair):
    """The whole layer (2 layers, both directions, padding) in its input, initial state and weights."""
    _, layer = pair(cell, path, input_size=2, hidden_size=2, num_layers=2, bidirectional=True, batch_first=True)
    names = [n for n, _ in layer.named_parameters()]
    lengths = torch.tensor([3, 2])
    x = torch.randn(2, 3, 2, dtype=F64, requires_grad=True)
    h0 = [torch.randn(4, 2, 2, dtype=F64, requires_grad=True) for _ in range(layer.num_states)]
    params = [p.detach().clone().requires_grad_() for p in layer.parameters()]

    def f(x, *rest):
        state, weights = rest[: len(h0)], dict(zip(names, rest[len(h0) :]))
        out, final = functional_call(layer, weights, (x, state if len(state) == 2 else state[0], lengths))
        return (out, *as_tuple(final))

    assert torch.autograd.gradgradcheck(f, (x, *h0, *params), fast_mode=True)  # random projections: seconds less


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("cell", list(CELLS))
def test_gradient_penalty_matches_torch(cell, path, pair):
    """A gradient penalty ‖∂loss/∂x‖² (create_graph=True): its gradients equal torch.nn's."""
    ref, ours = pair(cell, path, num_layers=2, bidirectional=True, batch_first=True)
    torch.manual_seed(2)
    x = torch.randn(3, 5, 3, dtype=F64)
    for module in (ref, ours):
        xm = x.clone().requires_grad_()
        (g,) = torch.autograd.grad(weighted_sum(*module(xm)), xm, create_graph=True)
        (g * g).sum().backward()
        module.x_grad = xm.grad
    torch.testing.assert_close(ours.x_grad, ref.x_grad, atol=1e-10, rtol=0)
    for name, p in ours._torch_names():
        torch.testing.assert_close(p.grad, getattr(ref, name).grad, atol=1e-10, rtol=0, msg=name)


# ---- 2. argument types ----
@pytest.mark.parametrize(
    "kwargs,error",
    [
        (dict(bias="True"), TypeError),
        (dict(bias=1), TypeError),
        (dict(batch_first="False"), TypeError),  # truthy: would silently mean batch-first
        (dict(batch_first=0), TypeError),
        (dict(input_size=3.0), TypeError),
        (dict(hidden_size="4"), TypeError),
        (dict(num_layers=2.0), TypeError),
        (dict(hidden_size=0), ValueError),
        (dict(input_size=-1), ValueError),
        (dict(num_layers=0), ValueError),
        (dict(dropout=1.5), ValueError),
        (dict(dropout="0.1"), ValueError),
        (dict(dropout=True), ValueError),
    ],
)
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_constructor_errors_have_torch_types(cell, kwargs, error):
    args = dict(input_size=3, hidden_size=4) | kwargs
    with pytest.raises(error):
        CELLS["lstm" if cell == "lstm" else "gru" if cell == "gru" else "rnn_tanh"][1](**args)
    for cls in (Recurrent, TorchRecurrent):
        name, value = next(iter(kwargs.items()))
        with pytest.raises(error, match=f"{name} must be .*got {value!r}"):
            cls(cell, **args)


@pytest.mark.parametrize("flag", ["bidirectional", "return_sequences", "return_state"])
@pytest.mark.parametrize("cls", [Recurrent, TorchRecurrent])
def test_flags_must_be_bool(cls, flag):
    """torch.nn does not check bidirectional (any truthy value means True); rnnlab refuses non-bools."""
    with pytest.raises(TypeError, match=f"{flag} must be True or False, got 'yes' \\(str\\)"):
        cls("gru", 3, 4, **{flag: "yes"})


@pytest.mark.parametrize("num_layers,warns", [(1, True), (2, False)])
def test_dropout_one_accepted_and_warns_as_torch(num_layers, warns):
    for build in (lambda: nn.GRU(3, 4, num_layers, dropout=1.0), lambda: Recurrent("gru", 3, 4, num_layers, dropout=1.0)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            build()
        assert any("num_layers" in str(w.message) for w in caught) == warns


# ---- 3. dtypes ----
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_input_dtype_must_match_weights(cell):
    module = Recurrent(cell, 3, 4).double()
    x = torch.randn(2, 5, 3)
    with pytest.raises(ValueError):  # torch.nn's type
        module.to_torch()(x)
    with pytest.raises(ValueError, match=r"input dtype torch.float32 does not match the weights' dtype torch.float64; "
                       r"convert the input \(x.double\(\)\) or the module \(module.float\(\)\)"):
        module(x)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_state_dtype_must_match_input(cell):
    module = Recurrent(cell, 3, 4)
    h = torch.zeros(1, 2, 4, dtype=F64)
    state = (h, h) if cell == "lstm" else h
    with pytest.raises(RuntimeError):  # torch.nn fails (inside its kernel) with a RuntimeError
        module.to_torch()(torch.randn(2, 5, 3), state)
    with pytest.raises(RuntimeError, match=r"state's dtype torch.float64 does not match the input's dtype torch.float32"):
        module(torch.randn(2, 5, 3), state)


def test_input_errors_are_value_and_runtime_errors():
    """torch.nn raises RuntimeError for a wrong feature count or state shape, rnnlab ValueError: both hold."""
    module = Recurrent("lstm", 3, 4)
    for call in (lambda: module(torch.randn(2, 5, 2)), lambda: module(torch.randn(2, 5, 3), (torch.zeros(1, 3, 4),) * 2)):
        with pytest.raises(RecurrentInputError) as caught:
            call()
        assert isinstance(caught.value, ValueError) and isinstance(caught.value, RuntimeError)


@pytest.mark.parametrize("cell,state", [("gru", "tuple"), ("rnn", "list"), ("lstm", "tensor"), ("lstm", "triple")])
def test_state_container_as_torch(cell, state):
    """h_0 a Tensor for RNN/GRU, (h_0, c_0) for LSTM; torch.nn fails on the others too."""
    h = torch.zeros(1, 2, 4)
    bad = {"tuple": (h,), "list": [h], "tensor": h, "triple": (h, h, h)}[state]
    module = Recurrent(cell, 3, 4)
    with pytest.raises(Exception):
        module.to_torch()(torch.randn(2, 5, 3), bad)
    with pytest.raises(RecurrentInputError, match=r"state must be (h_0, a Tensor|\(h_0, c_0\), a tuple of 2 Tensors)"):
        module(torch.randn(2, 5, 3), bad)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_autocast_runs_in_the_weights_dtype(cell):
    module = Recurrent(cell, 3, 4)
    x = torch.randn(2, 5, 3).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = module(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, module(x.float())[0], atol=0, rtol=0)


# ---- 4. unbatched input ----
@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("cell", list(CELLS))
def test_unbatched_matches_torch(cell, batch_first, with_state, pair):
    ref, ours = pair(cell, num_layers=2, bidirectional=True, batch_first=batch_first)
    x = torch.randn(5, 3, dtype=F64)
    state = None
    if with_state:
        state = tuple(torch.randn(4, 4, dtype=F64) for _ in range(ours.num_states))
        state = state if len(state) == 2 else state[0]
    grads = []
    for module in (ref, ours):
        xm = x.clone().requires_grad_()
        out, final = module(xm, state)
        assert out.shape == (5, 8) and all(s.shape == (4, 4) for s in as_tuple(final))
        weighted_sum(out, final).backward()
        grads.append((out, final, xm.grad))
    (out_r, fin_r, g_r), (out_o, fin_o, g_o) = grads
    torch.testing.assert_close(out_o, out_r, atol=1e-10, rtol=0)
    torch.testing.assert_close(as_tuple(fin_o), as_tuple(fin_r), atol=1e-10, rtol=0)
    torch.testing.assert_close(g_o, g_r, atol=1e-10, rtol=0)


def test_unbatched_flags_state_and_lengths():
    module = Recurrent("lstm", 3, 4, bidirectional=True, return_sequences=False).double()
    x = torch.randn(5, 3, dtype=F64)
    last, (h, c) = module(x)
    assert last.shape == (8,) and h.shape == c.shape == (2, 4)
    torch.testing.assert_close(last, torch.cat([h[0], h[1]]), atol=0, rtol=0)
    with pytest.raises(RuntimeError, match=r"each of shape \(2, 4\), got \[\(2, 1, 4\), \(2, 1, 4\)\].*unbatched 2-D"):
        module(x, (torch.zeros(2, 1, 4, dtype=F64),) * 2)  # torch.nn: RuntimeError too
    with pytest.raises(ValueError, match="unbatched .* pass lengths=None"):
        module(x, lengths=torch.tensor([5]))


# ---- 5. edges ----
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("cell", list(CELLS))
def test_batch_of_zero_sequences(cell, path, pair):
    ref, ours = pair(cell, path, num_layers=2, bidirectional=True)
    results = []
    for module in (ref, ours):
        x = torch.randn(5, 0, 3, dtype=F64, requires_grad=True)
        out, final = module(x)
        weighted_sum(out, final).backward()
        results.append((out.shape, [s.shape for s in as_tuple(final)], x.grad.shape))
    expected = (torch.Size([5, 0, 8]), [torch.Size([4, 0, 4])] * ours.num_states, torch.Size([5, 0, 3]))
    assert results[0] == results[1] == expected
    for name, p in ours._torch_names():  # no sequence, no gradient: zeros, as torch.nn
        assert torch.equal(p.grad, getattr(ref, name).grad) and not p.grad.any(), name


def test_batch_of_zero_with_lengths():
    out, h = Recurrent("gru", 3, 4)(torch.randn(0, 5, 3), lengths=torch.zeros(0, dtype=torch.long))
    assert out.shape == (0, 5, 4) and h.shape == (1, 0, 4)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_no_time_steps_refused_as_torch(cell):
    module = Recurrent(cell, 3, 4)
    with pytest.raises(RuntimeError, match="sequence length"):
        module.to_torch()(torch.randn(2, 0, 3))
    with pytest.raises(RuntimeError, match=r"no time steps \(shape \(2, 0, 3\)\)"):
        module(torch.randn(2, 0, 3))


@pytest.mark.parametrize("cell", ["rnn_tanh", "lstm", "gru"])
@pytest.mark.parametrize("p", [0.5, 1.0])
def test_dropout_in_training_matches_torch(cell, p, pair):
    """Same seed, same masks: torch.nn's CPU layers draw their inter-layer masks as F.dropout does;
    p=1.0 zeroes what the second layer reads."""
    ref, ours = pair(cell, num_layers=3, dropout=p)
    ref.train(), ours.train()
    x = torch.randn(5, 2, 3, dtype=F64)
    torch.manual_seed(5)
    expected = ref(x)
    torch.manual_seed(5)
    got = ours(x)
    torch.testing.assert_close(got[0], expected[0], atol=1e-10, rtol=0)
    torch.testing.assert_close(as_tuple(got[1]), as_tuple(expected[1]), atol=1e-10, rtol=0)


def test_hidden_size_zero_refused_as_torch():
    with pytest.raises(ValueError):
        nn.LSTM(3, 0)
    for build in (lambda: Recurrent("lstm", 3, 0), lambda: Recurrent("lstm", 3, 4).cells[0].__class__(3, 0)):
        with pytest.raises(ValueError, match="hidden_size must be a positive integer, got 0"):
            build()


@pytest.mark.parametrize("cell", list(CELLS))
def test_same_seed_same_initial_weights_as_torch(cell):
    name, cls, kwargs = CELLS[cell]
    torch.manual_seed(3)
    ref = cls(3, 4, 2, bidirectional=True, **kwargs)
    torch.manual_seed(3)
    ours = Recurrent(name, 3, 4, 2, bidirectional=True, **kwargs, **({"forget_bias": None} if name == "lstm" else {}))
    for n, p in ours._torch_names():
        assert torch.equal(p, getattr(ref, n)), n


# ---- PackedSequence in, PackedSequence out ----
@pytest.mark.parametrize("enforce_sorted", [False, True])
@pytest.mark.parametrize("cell", list(CELLS))
def test_packed_sequence_matches_torch(cell, enforce_sorted, pair):
    ref, ours = pair(cell, num_layers=2, bidirectional=True, batch_first=True)
    lengths = torch.tensor([5, 4, 2]) if enforce_sorted else torch.tensor([2, 5, 4])
    x = torch.randn(3, 5, 3, dtype=F64)
    state = tuple(torch.randn(4, 3, 4, dtype=F64) for _ in range(ours.num_states))
    state = state if len(state) == 2 else state[0]
    results = []
    for module in (ref, ours):
        xm = x.clone().requires_grad_()
        packed = pack_padded_sequence(xm, lengths, batch_first=True, enforce_sorted=enforce_sorted)
        out, final = module(packed, state)
        weighted_sum(out.data, final).backward()
        results.append((out, final, xm.grad))
    (out_r, fin_r, g_r), (out_o, fin_o, g_o) = results
    assert type(out_o) is type(out_r)
    for a, b in zip(out_o, out_r, strict=True):  # data, batch_sizes, sorted_indices, unsorted_indices
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0) if a is not None else None
    torch.testing.assert_close(as_tuple(fin_o), as_tuple(fin_r), atol=1e-10, rtol=0)
    torch.testing.assert_close(g_o, g_r, atol=1e-10, rtol=0)


def test_packed_sequence_with_flags_and_lengths():
    module = Recurrent("gru", 3, 4, return_sequences=False).double()
    packed = pack_padded_sequence(torch.randn(3, 5, 3, dtype=F64), torch.tensor([2, 5, 4]), True, False)
    last, h = module(packed)
    torch.testing.assert_close(last, h[-1], atol=0, rtol=0)
    with pytest.raises(ValueError, match="PackedSequence carries its own lengths"):
        module(packed, lengths=torch.tensor([2, 5, 4]))


# ---- torch.nn's remaining surface ----
def test_torch_attributes_and_factory_kwargs():
    module = Recurrent("lstm", 3, 4, bias=False, dtype=F64)
    assert module.bias is False and module.proj_size == 0 and module.cells[0].weight_ih.dtype == F64
    assert Recurrent("rnn", 3, 4, nonlinearity="relu").nonlinearity == nn.RNN(3, 4, nonlinearity="relu").nonlinearity
    module.flatten_parameters()  # torch.nn's cuDNN weight packing: nothing to do here
    with pytest.raises(ValueError, match="proj_size=2 is not supported"):
        Recurrent("lstm", 3, 4, proj_size=2)
