"""minGRU and minLSTM: their steps against their equations, the log-space parallel scan against
the step loop (float64, gradients too), long sequences, padding, generation, and training."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from conftest import TINY
from rnnlab.nn import Recurrent
from rnnlab.nn.cells import make_cell
from rnnlab.nn.scan import g, log_g, scan_log

CELLS = ["mingru", "minlstm"]


def reference(name: str, cell, x: Tensor, h: Tensor) -> Tensor:
    """The paper's equations written out with plain ops, step after step: (T, B, H)."""
    H = cell.hidden_size
    out = []
    for x_t in x:
        a = x_t @ cell.weight_ih.T + cell.bias_ih
        if name == "mingru":
            z, cand = torch.sigmoid(a[:, :H]), a[:, H:]
            cand = torch.where(cand >= 0, cand + 0.5, torch.sigmoid(cand))
            h = (1 - z) * h + z * cand
        else:
            f, i, cand = torch.sigmoid(a[:, :H]), torch.sigmoid(a[:, H : 2 * H]), a[:, 2 * H :]
            cand = torch.where(cand >= 0, cand + 0.5, torch.sigmoid(cand))
            h = f / (f + i) * h + i / (f + i) * cand
        out.append(h)
    return torch.stack(out)


def test_g_is_positive_continuous_and_its_log_is_exact() -> None:
    v = torch.linspace(-30, 30, 2001, dtype=torch.float64)
    assert (g(v) > 0).all() and torch.allclose(log_g(v), g(v).log(), rtol=1e-12, atol=1e-12)
    assert g(torch.tensor([0.0])).item() == 0.5 == torch.sigmoid(torch.tensor(0.0)).item()  # continuous at 0


def test_scan_is_the_linear_recurrence() -> None:
    torch.manual_seed(0)
    a, b = torch.rand(30, 2, 3, dtype=torch.float64), torch.rand(30, 2, 3, dtype=torch.float64)
    h0 = torch.randn(2, 3, dtype=torch.float64)  # any sign: its term stays outside the logarithm
    h, want = h0, []
    for a_t, b_t in zip(a, b):
        h = a_t * h + b_t
        want.append(h)
    assert torch.allclose(scan_log(a.log(), b.log(), h0), torch.stack(want), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", CELLS)
def test_scan_equals_step_loop_and_the_equations_in_float64(name: str) -> None:
    torch.manual_seed(1)
    cell = make_cell(name, 5, 7).double()
    with torch.no_grad():
        cell.weight_ih.uniform_(-2, 2)  # gates well away from 1/2, candidates of both signs
    x = torch.randn(60, 3, 5, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(3, 7, dtype=torch.float64, requires_grad=True)
    scanned = cell.run(x, (h0,))[0]
    cell.scan = False
    looped = cell.run(x, (h0,))[0]
    assert torch.allclose(scanned, looped, rtol=1e-10, atol=1e-12)
    assert torch.allclose(looped, reference(name, cell, x, h0), rtol=1e-12, atol=1e-12)
    w = torch.randn_like(scanned)
    grads_scan = torch.autograd.grad((scanned * w).sum(), (x, h0, cell.weight_ih, cell.bias_ih))
    grads_loop = torch.autograd.grad((looped * w).sum(), (x, h0, cell.weight_ih, cell.bias_ih))
    for a, b in zip(grads_scan, grads_loop):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("name", CELLS)
def test_float32_scan_stays_close_over_4000_steps(name: str) -> None:
    torch.manual_seed(2)
    cell = make_cell(name, 4, 8)
    x = torch.randn(4000, 2, 4)
    h = cell.run(x, (torch.zeros(2, 8),))[0]
    exact = cell.double().run(x.double(), (torch.zeros(2, 8, dtype=torch.float64),))[0]
    assert torch.isfinite(h).all() and (h.double() - exact).abs().max() < 1e-3 * exact.abs().max()


@pytest.mark.parametrize("name", CELLS)
def test_layer_stacks_pads_runs_both_ways_and_generates_step_by_step(name: str) -> None:
    torch.manual_seed(3)
    layer = Recurrent(name, 5, 6, num_layers=2, bidirectional=True).double()
    x = torch.randn(3, 12, 5, dtype=torch.float64)
    lengths = torch.tensor([12, 7, 2])
    out, state = layer(x, lengths=lengths)
    for b, n in enumerate(lengths.tolist()):  # each sentence alone: padding changes nothing
        alone, alone_state = layer(x[b : b + 1, :n])
        assert torch.allclose(out[b, :n], alone[0], rtol=1e-12, atol=1e-12) and (out[b, n:] == 0).all()
        assert torch.allclose(state[:, b], alone_state[:, 0], rtol=1e-12, atol=1e-12)
    uni = Recurrent(name, 5, 6, num_layers=2).double()
    whole, _ = uni(x)
    s, steps = None, []
    for t in range(12):  # generation: one step at a time, the state carried
        y, s = uni(x[:, t : t + 1], s)
        steps.append(y)
    assert torch.allclose(torch.cat(steps, 1), whole, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", CELLS)
def test_no_recurrent_weight_and_orthogonal_init(name: str) -> None:
    cell = make_cell(name, 5, 6, init="orthogonal")
    assert cell.weight_hh is None and cell.bias_hh is None and (cell.bias_ih == 0).all()
    assert [n for n, _ in cell.named_parameters()] == ["weight_ih", "bias_ih"]
    bound = math.sqrt(6 / (5 + 6))  # Xavier-uniform per gate block
    assert cell.weight_ih.abs().max() <= bound


@pytest.mark.parametrize("name", CELLS)
def test_trains_through_train_py_on_every_task(cfg_factory, name: str) -> None:
    from rnnlab.train import train

    metrics = train(cfg_factory(f"model={name}", "debug=fast", "model.num_layers=2", *TINY[:1]))
    assert math.isfinite(metrics["val/loss"]) and math.isfinite(metrics["test/loss"])
