"""The GEMM route: large float32 CPU products through oneDNN, the rest through BLAS, same results."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F

from rnnlab.nn import Recurrent
from rnnlab.nn.kernels import native
from rnnlab.nn.kernels.common import linear, matmul

needs_native = pytest.mark.skipif(native.ops() is None, reason="native CPU loops did not build here")
needs_onednn = pytest.mark.skipif(not native.onednn_available(), reason="torch's float32 oneDNN entry does not run on this CPU")
F32 = dict(atol=1e-5, rtol=1e-5)


@pytest.fixture
def onednn_everywhere() -> Iterator[None]:
    """Every float32 product, however small, through oneDNN (the threshold at 0) for one test."""
    if not native.onednn_available():
        pytest.skip("torch's float32 oneDNN entry does not run on this CPU: every product takes BLAS")
    previous = native.set_onednn_from(0)
    yield
    native.set_onednn_from(previous)


def took_the_route(out: torch.Tensor) -> bool:
    """out came from the native linear (its autograd node, or the view of it)."""
    nodes = [out.grad_fn, *(f for f, _ in out.grad_fn.next_functions)]
    return any(type(n).__name__ == "_LinearBackward" for n in nodes if n is not None)


@needs_native
def test_products_take_blas_where_onednn_cannot_run() -> None:
    if native.onednn_available():
        pytest.skip("oneDNN runs here")
    assert native.onednn_from() == native.NEVER == native.ops().set_onednn_from(-1)
    assert native.set_onednn_from(0) == native.NEVER == native.onednn_from()  # stays off
    x, w = torch.randn(300, 200), torch.randn(400, 200)  # above the usual threshold
    assert torch.allclose(linear(x, w), F.linear(x, w), **F32)


@needs_onednn
def test_threshold_reads_and_sets_through_both_sides() -> None:
    previous = native.set_onednn_from(123)
    try:
        assert native.onednn_from() == 123 == native.ops().set_onednn_from(-1)
    finally:
        native.set_onednn_from(previous)
    assert native.onednn_from() == previous


@needs_native
@pytest.mark.parametrize("transpose_a", [False, True])
@pytest.mark.parametrize("transpose_b", [False, True])
def test_matmul_equals_torch_for_any_strides(onednn_everywhere, transpose_a: bool, transpose_b: bool) -> None:
    torch.manual_seed(0)
    a = torch.randn(40, 24).t() if transpose_a else torch.randn(24, 40)  # (24, 40) either way
    b = torch.randn(56, 40).t() if transpose_b else torch.randn(40, 56)
    bias = torch.randn(56)
    torch.testing.assert_close(matmul(a, b), a @ b, **F32)
    torch.testing.assert_close(native.ops().matmul(a, b, bias), torch.addmm(bias, a, b), **F32)
    # float64 never leaves BLAS (oneDNN has none): bit for bit torch's.
    a64, b64 = a.double(), b.double()
    assert torch.equal(matmul(a64, b64), a64 @ b64)


@needs_native
@pytest.mark.parametrize("bias", [True, False])
def test_linear_and_its_gradients_of_gradients_equal_f_linear(onednn_everywhere, bias: bool) -> None:
    """Forward, backward and a gradient penalty (create_graph=True) through the oneDNN route agree
    with F.linear's; a 3-D input keeps its leading dimensions."""
    torch.manual_seed(1)
    x = torch.randn(5, 7, 12, requires_grad=True)
    w = torch.randn(20, 12, requires_grad=True)
    b = torch.randn(20, requires_grad=True) if bias else None
    params = [x, w] + ([b] if bias else [])

    def penalty(fn) -> tuple[torch.Tensor, list[torch.Tensor]]:
        out = fn(x, w, b)
        g = torch.autograd.grad(out.tanh().sum(), x, create_graph=True)[0]
        return out, torch.autograd.grad(out.square().sum() + g.square().sum(), params)

    out, grads = penalty(linear)
    out_ref, grads_ref = penalty(F.linear)
    assert out.shape == (5, 7, 20)
    assert took_the_route(out)
    torch.testing.assert_close(out, out_ref, **F32)
    for got, want in zip(grads, grads_ref):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-5)


@needs_native
def test_small_products_and_other_devices_keep_torchs_op() -> None:
    x, w = torch.randn(4, 3), torch.randn(5, 3)  # 60 multiply-adds, far below the threshold
    assert torch.equal(linear(x, w), F.linear(x, w))
    assert not took_the_route(linear(x.requires_grad_(), w))
    big = linear(torch.randn(256, 128, requires_grad=True), torch.randn(512, 128))  # 2^24 multiply-adds
    assert took_the_route(big) == native.onednn_available()  # without oneDNN, torch's op takes it all


@needs_native
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_layers_with_every_product_on_onednn_equal_torch_nn(onednn_everywhere, cell: str, bidirectional: bool) -> None:
    """Projections, per-step GEMMs (forward and backward, serial and row-split) and weight gradients
    all on oneDNN: float32 outputs, states and every gradient within 1e-5 of torch.nn."""
    torch.manual_seed(2)
    ref = getattr(torch.nn, cell.upper())(10, 24, num_layers=2, batch_first=True, bidirectional=bidirectional)
    layer = Recurrent.from_torch(ref)
    x = torch.randn(20, 9, 10, requires_grad=True)
    lengths = torch.randint(1, 10, (20,))
    lengths[0] = 9
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out_ref = torch.nn.utils.rnn.pad_packed_sequence(ref(packed)[0], batch_first=True)[0]
    grads_ref = torch.autograd.grad(out_ref.square().sum(), [x, *ref.parameters()])
    previous = native.ops().set_serial_below(-1)
    try:
        for serial_below in (1 << 62, 0):  # the whole batch on one thread; then each thread its own rows
            native.ops().set_serial_below(serial_below)
            out, _ = layer(x, lengths=lengths)
            torch.testing.assert_close(out, out_ref, **F32)
            grads = torch.autograd.grad(out.square().sum(), [x, *layer.parameters()])
            for got, want in zip(grads, grads_ref):
                torch.testing.assert_close(got, want, **F32)
    finally:
        native.ops().set_serial_below(previous)


@needs_native
@pytest.mark.parametrize("rows, k, n", [(1, 1, 1), (3, 7, 17), (5, 33, 65), (9, 128, 512), (16, 130, 200)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_step_gemm_equals_torch_at_ragged_shapes(rows: int, k: int, n: int, dtype: torch.dtype) -> None:
    """The loops' per-step product (the AVX-512 kernel over packed W where built: tiles of 4 rows x
    64 columns, remainders masked) at shapes that fill no tile exactly, repeated over one packing."""
    torch.manual_seed(3)
    a, w = torch.randn(rows, k, dtype=dtype), torch.randn(n, k, dtype=dtype)
    tol = dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else dict(atol=1e-12, rtol=0)
    torch.testing.assert_close(native.ops().step_matmul(a, w, 3), a @ w.t(), **tol)


needs_step_kernel = pytest.mark.skipif(not native.has_step_kernel(), reason="the AVX-512 step kernel is not built here")


@pytest.fixture
def folds(monkeypatch) -> list[bool]:
    """Records, for each LSTM cell's run, whether the projection went into the loop."""
    import rnnlab.nn.cells.lstm as lstm_module

    seen, inner = [], lstm_module.lstm_sequence_from_input

    def spy(*args):
        out = inner(*args)
        seen.append(out is not None)
        return out

    monkeypatch.setattr(lstm_module, "lstm_sequence_from_input", spy)
    return seen


@needs_step_kernel
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_lstm_with_the_projection_in_the_loop_equals_torch_nn(folds, bias: bool, bidirectional: bool) -> None:
    """float32 LSTMs fold U x_t into each step's product ([x_t, h_{t-1}] [U, W]ᵀ): with lengths and an
    initial state, serial and row-split, forward alone and with every gradient, within 1e-5 of torch.nn."""
    torch.manual_seed(4)
    ref = torch.nn.LSTM(10, 24, num_layers=2, bias=bias, batch_first=True, bidirectional=bidirectional)
    layer = Recurrent.from_torch(ref)
    D = 2 if bidirectional else 1
    x = torch.randn(20, 9, 10, requires_grad=True)
    state = tuple(torch.randn(2 * D, 20, 24, requires_grad=True) for _ in range(2))
    lengths = torch.randint(1, 10, (20,))
    lengths[0] = 9
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out_ref, (h_ref, c_ref) = ref(packed, state)
    out_ref = torch.nn.utils.rnn.pad_packed_sequence(out_ref, batch_first=True)[0]
    inputs = [x, *state, *ref.parameters()]
    grads_ref = torch.autograd.grad((out_ref.square().sum() + h_ref.sum() + c_ref.square().sum()), inputs)
    previous = native.ops().set_serial_below(-1)
    try:
        for serial_below in (1 << 62, 0):
            native.ops().set_serial_below(serial_below)
            with torch.no_grad():
                out, (h, c) = layer(x, state, lengths=lengths)
            for got, want in [(out, out_ref), (h, h_ref), (c, c_ref)]:
                torch.testing.assert_close(got, want.detach(), **F32)
            out, (h, c) = layer(x, state, lengths=lengths)
            grads = torch.autograd.grad((out.square().sum() + h.sum() + c.square().sum()),
                                        [x, *state, *layer.parameters()])
            for got, want in zip(grads, grads_ref):
                torch.testing.assert_close(got, want, **F32)
    finally:
        native.ops().set_serial_below(previous)
    assert folds == [True] * (8 * D)  # 2 layers x D directions, 4 times


@needs_step_kernel
def test_lstm_with_the_projection_in_the_loop_has_gradients_of_gradients(folds) -> None:
    """A gradient penalty (create_graph=True) through the folded loop equals torch.nn's in float32."""
    torch.manual_seed(5)
    ref = torch.nn.LSTM(6, 16, num_layers=2)
    layer = Recurrent.from_torch(ref)
    x = torch.randn(7, 5, 6, requires_grad=True)

    def penalty_grads(module: torch.nn.Module) -> tuple[torch.Tensor, ...]:
        (gx,) = torch.autograd.grad(module(x)[0].tanh().sum(), x, create_graph=True)
        return torch.autograd.grad(gx.square().sum(), [x, *module.parameters()])

    for got, want in zip(penalty_grads(layer), penalty_grads(ref)):
        torch.testing.assert_close(got, want, **F32)
    assert folds == [True, True]
