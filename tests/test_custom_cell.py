"""A cell of one's own: the registry, the kernel-less autograd path, and the LayerNorm LSTM example."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from conftest import TINY, run_script
from rnnlab.nn import CELLS, LayerNormLSTMCell, LSTMCell, Recurrent, RecurrentCell, TorchRecurrent, register_cell
from rnnlab.nn.cells.base import State


def layernorm_lstm_reference(cell: LayerNormLSTMCell, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """Ba et al. 2016's layer-normalised LSTM, written out again from its equations with F.layer_norm."""
    H = cell.hidden_size
    ln = lambda a, m: F.layer_norm(a, a.shape[-1:], m.weight, m.bias, m.eps)  # noqa: E731
    b = cell.bias_ih + cell.bias_hh
    a = ln(h @ cell.weight_hh.T, cell.ln_h) + ln(x @ cell.weight_ih.T, cell.ln_x) + b
    i, f, g, o = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(ln(c_new, cell.ln_c)), c_new


def randomise(module: nn.Module) -> nn.Module:
    """Random gains and shifts too: at their init (1, 0) a bug in where they apply would not show."""
    with torch.no_grad():
        for p in module.parameters():
            p.uniform_(-0.8, 0.8)
    return module


def test_layernorm_lstm_step_matches_its_equations() -> None:
    torch.manual_seed(0)
    cell = randomise(LayerNormLSTMCell(5, 7)).double()
    x, h, c = torch.randn(3, 5, dtype=torch.float64), torch.randn(3, 7, dtype=torch.float64), torch.randn(3, 7, dtype=torch.float64)
    h1, (h1_again, c1) = cell(x, (h, c))
    ref_h, ref_c = layernorm_lstm_reference(cell, x, h, c)
    torch.testing.assert_close(h1, ref_h, rtol=0, atol=1e-14)
    torch.testing.assert_close(c1, ref_c, rtol=0, atol=1e-14)
    assert h1_again is h1


def test_layernorm_lstm_sequence_matches_a_loop_of_its_equations() -> None:
    torch.manual_seed(1)
    layer = randomise(Recurrent("layernorm_lstm", 4, 6)).double()
    x = torch.randn(2, 9, 4, dtype=torch.float64)
    out, (h_n, c_n) = layer(x)
    h = c = torch.zeros(2, 6, dtype=torch.float64)
    for t in range(9):
        h, c = layernorm_lstm_reference(layer.cells[0], x[:, t], h, c)
        torch.testing.assert_close(out[:, t], h, rtol=0, atol=1e-13)
    torch.testing.assert_close(h_n[0], h, rtol=0, atol=1e-13)
    torch.testing.assert_close(c_n[0], c, rtol=0, atol=1e-13)


def test_layernorm_lstm_init_and_kernel() -> None:
    cell = LayerNormLSTMCell(3, 4)
    assert not cell.fused and not LayerNormLSTMCell.has_kernel()  # LSTMCell's kernel computes another cell
    assert LSTMCell.has_kernel() and LSTMCell(3, 4).fused
    assert torch.equal(cell.ln_h.weight, torch.ones(16)) and torch.equal(cell.ln_c.bias, torch.zeros(4))
    assert torch.equal(cell.bias_ih[4:8], torch.ones(4)) and torch.equal(cell.bias_hh[4:8], torch.zeros(4))  # forget_bias
    with pytest.raises(ValueError, match="fused=True needs a hand-written kernel"):
        LayerNormLSTMCell(3, 4, fused=True)
    with pytest.raises(ValueError, match="no torch.nn counterpart"):
        Recurrent("layernorm_lstm", 3, 4).to_torch()
    orthogonal = LayerNormLSTMCell(3, 4, init="orthogonal")
    assert torch.allclose(orthogonal.weight_hh[:4] @ orthogonal.weight_hh[:4].T, torch.eye(4), atol=1e-5)


@pytest.mark.slow
def test_layernorm_lstm_gradcheck() -> None:
    torch.manual_seed(2)
    cell = randomise(LayerNormLSTMCell(3, 4)).double()
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    h = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    c = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    params = tuple(cell.parameters())
    assert torch.autograd.gradcheck(lambda x, h, c, *_: torch.cat(cell(x, (h, c))[1], 1), (x, h, c, *params))

    layer = randomise(Recurrent("layernorm_lstm", 2, 3, num_layers=2, bidirectional=True)).double()
    xs = torch.randn(2, 4, 2, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([4, 2])

    def run(xs: Tensor, *_: Tensor) -> tuple[Tensor, ...]:
        out, (h_n, c_n) = layer(xs, lengths=lengths)
        return out, h_n, c_n

    assert torch.autograd.gradcheck(run, (xs, *layer.parameters()))


@pytest.mark.parametrize("bidirectional", [False, True])
def test_layernorm_lstm_padding_changes_nothing(bidirectional: bool) -> None:
    torch.manual_seed(3)
    layer = randomise(Recurrent("layernorm_lstm", 3, 5, num_layers=2, bidirectional=bidirectional)).double()
    batch = torch.randn(3, 8, 3, dtype=torch.float64)
    lengths = torch.tensor([8, 4, 6])
    out, (h_n, c_n) = layer(batch, lengths=lengths)
    for b, n in enumerate(lengths.tolist()):
        alone, (h_a, c_a) = layer(batch[b : b + 1, :n])
        torch.testing.assert_close(out[b, :n], alone[0], rtol=0, atol=1e-13)
        assert torch.all(out[b, n:] == 0)
        torch.testing.assert_close(h_n[:, b], h_a[:, 0], rtol=0, atol=1e-13)
        torch.testing.assert_close(c_n[:, b], c_a[:, 0], rtol=0, atol=1e-13)


class MinimalGatedCell(RecurrentCell):
    """A user's cell in ten lines: h_t = (1 - z) ⊙ h_{t-1} + z ⊙ tanh(U_h x_t + W_h h_{t-1} + b_h),
    z = σ(U_z x_t + W_z h_{t-1} + b_z)."""

    num_gates = 2

    def step(self, xw_t: Tensor, state: State) -> tuple[Tensor, State]:
        (h,) = state
        z, n = (xw_t + h @ self.weight_hh.t()).chunk(2, 1)
        z = torch.sigmoid(z)
        h = (1 - z) * h + z * torch.tanh(n)
        return h, (h,)


@pytest.fixture
def minimal_gated() -> type[RecurrentCell]:
    register_cell("minimal_gated")(MinimalGatedCell)
    yield MinimalGatedCell
    del CELLS["minimal_gated"]


def test_a_registered_cell_runs_every_layer_feature(minimal_gated: type[RecurrentCell]) -> None:
    torch.manual_seed(4)
    layer = Recurrent("minimal_gated", 3, 4, num_layers=2, bidirectional=True).double()
    assert all(not cell.fused for cell in layer.cells)
    x = torch.randn(2, 6, 3, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([6, 3])
    out, h_n = layer(x, lengths=lengths)
    assert out.shape == (2, 6, 8) and h_n.shape == (4, 2, 4)
    # one layer by hand, for the second (padded) sequence
    single = Recurrent("minimal_gated", 3, 4).double()
    out1, h1 = single(x, lengths=lengths)
    h = torch.zeros(1, 4, dtype=torch.float64)
    for t in range(3):
        h, _ = single.cells[0](x[1:2, t], h)
        torch.testing.assert_close(out1[1, t], h[0], rtol=0, atol=1e-14)
    torch.testing.assert_close(h1[0, 1], h[0], rtol=0, atol=1e-14)
    assert torch.autograd.gradcheck(lambda x: layer(x, lengths=lengths)[0], (x,))
    # by class as well as by name, and the name is taken now
    assert Recurrent(MinimalGatedCell, 3, 4).cells[0].__class__ is MinimalGatedCell
    with pytest.raises(ValueError, match="the name is taken"):
        register_cell("minimal_gated")(LSTMCell)
    with pytest.raises(ValueError, match="register yours with register_cell|register a name"):
        Recurrent("no_such_cell", 3, 4)


def test_registry_refuses_what_could_not_run() -> None:
    before = dict(CELLS)
    with pytest.raises(ValueError, match="letters, digits and _"):
        register_cell("my cell")
    with pytest.raises(TypeError, match="not a RecurrentCell subclass"):
        register_cell("plain")(nn.LSTMCell)
    with pytest.raises(TypeError, match="does not define `step`"):
        register_cell("stepless")(type("Stepless", (RecurrentCell,), {}))
    register_cell("lstm")(LSTMCell)  # the same class again (a module imported twice) is harmless
    assert CELLS == before
    for bad in (["lstm"], None, "LSTM"):
        with pytest.raises(ValueError, match="cell must be one of"):
            Recurrent(bad, 3, 4)
    with pytest.raises(ValueError, match=r"cell must be one of \['gru', 'lstm', 'rnn'\].*layer=rnnlab"):
        TorchRecurrent("layernorm_lstm", 3, 4)  # torch.nn has no such layer


def test_a_subclass_that_changes_step_never_runs_its_parents_kernel() -> None:
    class Peephole(LSTMCell):  # any change to step: LSTMCell's kernel would compute the plain LSTM
        def step(self, xw_t: Tensor, state: State) -> tuple[Tensor, State]:
            return super().step(xw_t, state)

    assert not Peephole.has_kernel() and not Peephole(3, 4).fused


@pytest.mark.slow
def test_layernorm_lstm_trains_from_train_py(tmp_path: Path, tiny_corpus: Path) -> None:
    done = run_script(
        "train.py", "task=charlm", "model=layernorm_lstm", f"task.data.path={tiny_corpus}", *TINY, "trainer.limit_train_batches=8",
        "logger=[]", f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["step"] == 8 and math.isfinite(metrics["val/loss"]) and math.isfinite(metrics["test/loss"])
    assert (tmp_path / "run" / "checkpoints" / "best.ckpt").is_file()
