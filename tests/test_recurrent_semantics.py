"""What the layer promises beyond torch.nn parity: padding semantics, the Keras-style flags,
inter-layer dropout, and a clear ValueError for every bad argument."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rnnlab.nn import Recurrent, TorchRecurrent

B, T, I, H = 3, 6, 4, 5


def make(cell="lstm", **kw):
    torch.manual_seed(0)
    return Recurrent(cell, I, H, **kw).double()


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_each_sequence_as_if_alone(cell, bidirectional):
    """Padding (filled with garbage) changes nothing: every sequence gives what it gives alone."""
    layer = make(cell, num_layers=2, bidirectional=bidirectional)
    lengths = torch.tensor([6, 2, 4])
    x = torch.randn(B, T, I, dtype=torch.float64)
    for b, n in enumerate(lengths):
        x[b, n:] = 1e3 * torch.randn(T - n, I)  # padding that would wreck any state it touched
    out, state = layer(x, lengths=lengths)
    h_n = state[0] if cell == "lstm" else state
    for b, n in enumerate(lengths.tolist()):
        out_b, state_b = layer(x[b : b + 1, :n])
        torch.testing.assert_close(out[b, :n], out_b[0], atol=1e-12, rtol=0)
        assert torch.all(out[b, n:] == 0)  # padded outputs are zero
        hb = state_b[0] if cell == "lstm" else state_b
        torch.testing.assert_close(h_n[:, b], hb[:, 0], atol=1e-12, rtol=0)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_return_sequences_false_is_last_real_output(bidirectional):
    layer = make(bidirectional=bidirectional)
    lengths = torch.tensor([6, 2, 5])
    x = torch.randn(B, T, I, dtype=torch.float64)
    full, _ = layer(x, lengths=lengths)
    layer.return_sequences = False
    last, _ = layer(x, lengths=lengths)
    assert last.shape == (B, layer.output_size)
    for b, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(last[b, :H], full[b, n - 1, :H], atol=0, rtol=0)  # forward: last real step
        if bidirectional:
            torch.testing.assert_close(last[b, H:], full[b, 0, H:], atol=0, rtol=0)  # backward: t = 0


def test_return_state_false_gives_none_and_same_output():
    layer = make("gru")
    x = torch.randn(B, T, I, dtype=torch.float64)
    out, state = layer(x)
    layer.return_state = False
    out2, none = layer(x)
    assert none is None and torch.equal(out, out2) and state.shape == (1, B, H)


@pytest.mark.parametrize("cls", [Recurrent, TorchRecurrent])
def test_flags_same_contract_for_torch_baseline(cls):
    torch.manual_seed(0)
    layer = cls("lstm", I, H, num_layers=2, bidirectional=True, return_sequences=False).double()
    x = torch.randn(B, T, I, dtype=torch.float64)
    out, (h, c) = layer(x, lengths=torch.tensor([6, 3, 1]))
    assert out.shape == (B, 2 * H) and h.shape == c.shape == (4, B, H)
    torch.testing.assert_close(out, torch.cat([h[-2], h[-1]], 1), atol=0, rtol=0)


def test_torch_baseline_honours_forget_bias_and_init():
    torch.manual_seed(0)
    layer = TorchRecurrent("lstm", I, H, init="orthogonal", forget_bias=1.0)
    b = layer.rnn.bias_ih_l0 + layer.rnn.bias_hh_l0
    assert torch.equal(b[H : 2 * H], torch.ones(H)) and torch.equal(b[:H], torch.zeros(H))
    w = layer.rnn.weight_hh_l0[:H]
    torch.testing.assert_close(w @ w.t(), torch.eye(H), atol=1e-5, rtol=0)


def test_inter_layer_dropout_is_applied_between_layers_only():
    torch.manual_seed(0)
    stacked = Recurrent("gru", I, H, num_layers=2, dropout=0.5).double().train()
    first = Recurrent("gru", I, H).double()
    second = Recurrent("gru", H, H).double()
    first.cells[0].load_state_dict(stacked.cells[0].state_dict())
    second.cells[0].load_state_dict(stacked.cells[1].state_dict())
    x = torch.randn(B, T, I, dtype=torch.float64)
    torch.manual_seed(7)
    out, _ = stacked(x)
    torch.manual_seed(7)
    expected, _ = second(F.dropout(first(x)[0], 0.5, training=True))
    torch.testing.assert_close(out, expected, atol=0, rtol=0)
    stacked.eval()  # no dropout at evaluation
    torch.testing.assert_close(stacked(x)[0], second(first(x)[0])[0], atol=0, rtol=0)


@pytest.mark.parametrize(
    "kwargs,match,error",
    [
        (dict(hidden_size=0), "hidden_size must be a positive integer, got 0", ValueError),
        (dict(hidden_size=-3), "hidden_size must be a positive integer, got -3", ValueError),
        (dict(input_size=2.5), "input_size must be a positive integer, got 2.5", TypeError),  # torch: TypeError
        (dict(num_layers=0), "num_layers must be a positive integer, got 0", ValueError),
        (dict(dropout=1.5), r"dropout must be a number in \[0, 1\], got 1.5", ValueError),
        (dict(dropout=-0.1), r"dropout must be a number in \[0, 1\], got -0.1", ValueError),
        (dict(cell="mamba"), "cell must be one of .*, got 'mamba'", ValueError),
        (dict(cell="rnn", nonlinearity="sigmoid"), "nonlinearity must be one of .*, got 'sigmoid'", ValueError),
        (dict(init="he"), "init must be one of .*, got 'he'", ValueError),
    ],
)
@pytest.mark.parametrize("cls", [Recurrent, TorchRecurrent])
def test_bad_constructor_arguments(cls, kwargs, match, error):
    args = dict(cell="lstm", input_size=I, hidden_size=H) | kwargs
    with pytest.raises(error, match=match):
        cls(**args)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda m: m(torch.randn(T)), r"input must be 3-D .*got 1-D shape \(6,\)"),
        (lambda m: m(torch.randn(B, T, I + 1)), r"input has 5 features but input_size=4"),
        (lambda m: m(torch.randn(B, 0, I)), r"no time steps \(shape \(3, 0, 4\)\)"),
        (lambda m: m(torch.randn(B, T, I), lengths=torch.tensor([6, 7, 2])), r"lengths must be <= .*\(6\), got 7"),
        (lambda m: m(torch.randn(B, T, I), lengths=torch.tensor([6, 0, 2])), r"lengths must be >= 1.*got 0"),
        (lambda m: m(torch.randn(B, T, I), lengths=torch.tensor([6, 2])), r"lengths must be .*shape \(3,\)"),
        (lambda m: m(torch.randn(B, T, I), lengths=torch.tensor([6.0, 2.0, 1.0])), r"lengths must be an integer"),
        (lambda m: m(torch.randn(B, T, I), (torch.zeros(1, B, H),) * 2), r"state must be .*\(2, 3, 5\), got \[\(1, 3, 5\)"),
        (lambda m: m(torch.randn(B, T, I), torch.zeros(2, B, H)), r"state must be \(h_0, c_0\)"),
    ],
)
def test_bad_call_arguments(call, match):
    layer = Recurrent("lstm", I, H, num_layers=2)
    with pytest.raises(ValueError, match=match):
        call(layer)


def test_cell_step_rejects_bad_shapes():
    cell = Recurrent("gru", I, H).cells[0]
    with pytest.raises(ValueError, match=r"x_t must be \(batch, 4\), got shape \(3, 5\)"):
        cell(torch.randn(3, 5))
    with pytest.raises(ValueError, match=r"state must be 1 tensor\(s\) of shape \(3, 5\)"):
        cell(torch.randn(3, I), torch.zeros(3, 4))


def test_from_torch_rejects_projection_and_other_modules():
    with pytest.raises(ValueError, match="proj_size=2"):
        Recurrent.from_torch(torch.nn.LSTM(3, 4, proj_size=2))
    with pytest.raises(ValueError, match="expected nn.RNN, nn.LSTM or nn.GRU, got Linear"):
        Recurrent.from_torch(torch.nn.Linear(3, 4))
