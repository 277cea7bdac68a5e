"""Gradients through time against the hand-derived backward product, σ_max, and the callback in a run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import TINY, compose_cfg
from rnnlab.nn import Recurrent
from rnnlab.nn.probe import hidden_grad_norms, largest_singular_values, unroll_with_handles


@pytest.mark.parametrize("num_layers", [1, 2])
def test_elman_gradient_norms_are_the_product_of_jacobians(num_layers: int) -> None:
    torch.manual_seed(0)
    layer = Recurrent("rnn", 3, 5, num_layers=num_layers).double()
    x = torch.randn(2, 9, 3, dtype=torch.float64)
    v = torch.randn(2, 5, dtype=torch.float64)
    got = hidden_grad_norms(layer, x, lambda h_last: (v * h_last).sum())
    # By hand: g_T = v, g_t = Wᵀ [(1 - h_{t+1}²) ⊙ g_{t+1}] (the top cell's W; the layers below do not depend on it).
    hs, _ = unroll_with_handles(layer, x)
    W = layer.cells[-1].weight_hh
    grads = [v]
    for t in range(len(hs) - 2, -1, -1):
        grads.insert(0, ((1 - hs[t + 1] ** 2) * grads[0]) @ W)
    want = torch.stack([g.norm() for g in grads]).detach()
    assert torch.allclose(got, want, rtol=1e-12, atol=0)
    out, _ = layer(x)  # the unrolled outputs are the layer's own
    assert torch.allclose(torch.stack(hs, 1), out, rtol=1e-12, atol=1e-12)


def test_lstm_and_a_bidirectional_layer() -> None:
    torch.manual_seed(1)
    lstm = Recurrent("lstm", 3, 4).double()
    norms = hidden_grad_norms(lstm, torch.randn(2, 30, 3, dtype=torch.float64), lambda h: h.sum())
    assert norms.shape == (30,) and torch.isfinite(norms).all() and norms[-1] == pytest.approx(8 ** 0.5)  # ∂(Σh)/∂h_T = 1s
    with pytest.raises(ValueError, match="one-direction rnnlab Recurrent"):
        hidden_grad_norms(Recurrent("rnn", 3, 4, bidirectional=True), torch.randn(1, 5, 3), lambda h: h.sum())


def test_largest_singular_values_per_cell() -> None:
    layer = Recurrent("gru", 3, 4, num_layers=2, bidirectional=True)
    got = largest_singular_values(layer)
    assert list(got) == ["l0", "l0_reverse", "l1", "l1_reverse"]
    assert got["l1_reverse"] == pytest.approx(float(torch.linalg.svdvals(layer.cells[3].weight_hh.detach()).max()), rel=1e-5)
    assert largest_singular_values(Recurrent("mingru", 3, 4)) == {}  # no W


def test_the_callback_logs_the_ratio_sigma_and_the_figure(tmp_path: Path, tiny_corpus: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from rnnlab.train import train

    train(compose_cfg(tmp_path, [f"task.data.path={tiny_corpus}", *TINY, "callbacks=diagnostics", "model=rnn", "trainer.max_epochs=2",
                                 "callbacks.progress_bar.refresh_rate=0", "callbacks.model_summary=null"]))
    acc = EventAccumulator(str(tmp_path / "tensorboard")).Reload()
    ratio = acc.Scalars("grad/first_over_last")
    assert len(ratio) == 2 and all(0 < r.value < 10 for r in ratio)  # one per validation
    assert len(acc.Scalars("grad/sigma_max/l0")) == 2
    assert len(acc.Images("grad/norm_through_time")) == 2
    saved = json.loads((tmp_path / "grad_through_time.json").read_text())
    assert len(saved["steps"]) == len(saved["norms"]) == len(saved["sigma_max"]) == 2 and saved["steps"][0] < saved["steps"][1]
    assert len(saved["norms"][0]) == 16  # one norm per step of the bptt window
    assert [s["l0"] for s in saved["sigma_max"]] == pytest.approx([v.value for v in acc.Scalars("grad/sigma_max/l0")], rel=1e-6)
    assert saved["norms"][-1][0] / saved["norms"][-1][-1] == pytest.approx(ratio[-1].value, rel=1e-5)
    from conftest import run_script

    r = run_script("scripts/plot_gradients.py", str(tmp_path), "--labels", "rnn", "--out", str(tmp_path / "g.png"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"
    assert f"= {ratio[-1].value:.3g}," in r.stdout.splitlines()[1]  # the last validation's ratio, as logged
