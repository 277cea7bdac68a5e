"""The thread policy: one thread where a recurrent step is small, all of torch's where it is not."""

from __future__ import annotations

import pytest
import torch

from rnnlab.nn import Recurrent, TorchRecurrent
from rnnlab.nn import threads as policy
from rnnlab.nn.kernels import native
from rnnlab.train import set_threads
from rnnlab.utils.errors import UserError


def test_step_work_decides_the_thread_count() -> None:
    assert policy.step_work(8, 32, 4) == 8 * 128 * 32
    assert policy.threads_for(8, 32, 4) == 1  # a tiny char-LM step: 3e4 multiply-adds
    assert policy.threads_for(64, 512, 4) == policy.DEFAULT_THREADS  # the char-LM recipe's: 7e7
    # The threshold itself: just below runs serially, at it does not.
    hidden = 64
    batch = policy.SERIAL_BELOW // (4 * hidden * hidden)
    assert policy.step_work(batch, hidden, 4) <= policy.SERIAL_BELOW
    assert policy.threads_for(batch + 1, hidden, 4) == policy.DEFAULT_THREADS
    assert policy.threads_for(batch - 1, hidden, 4) == 1


def test_largest_step_finds_rnnlab_and_torch_layers() -> None:
    model = torch.nn.ModuleDict({
        "small": Recurrent("gru", 8, 16, num_layers=2),
        "big": TorchRecurrent("lstm", 8, 24),
        "rnn": TorchRecurrent("rnn", 8, 40),  # 40² x 1 < 24² x 4
    })
    assert policy.largest_step(model) == (24, 4)
    assert policy.largest_step(Recurrent("rnn", 3, 5)) == (5, 1)
    assert policy.largest_step(torch.nn.Linear(3, 4)) is None
    assert policy.threads_for_model(torch.nn.Linear(3, 4), batch=1) == policy.DEFAULT_THREADS


def test_train_sets_the_count_by_the_model_and_refuses_bad_settings() -> None:
    tiny, big = Recurrent("lstm", 8, 32), Recurrent("lstm", 8, 512)
    assert set_threads("auto", tiny, batch=8) == 1 and torch.get_num_threads() == 1
    assert set_threads("auto", big, batch=64) == policy.DEFAULT_THREADS == torch.get_num_threads()
    assert set_threads("auto", tiny, batch=None) == policy.DEFAULT_THREADS  # no batch size known: torch's
    assert set_threads(3, tiny, batch=8) == 3 == torch.get_num_threads()
    for bad in (0, -1, "all", True, 1.5):
        with pytest.raises(UserError, match=r"^threads=.*: expected auto .* or a positive number of CPU threads"):
            set_threads(bad, tiny, batch=8)


def test_parallel_jobs_and_ddp_ranks_share_the_cores(cfg_factory) -> None:
    from rnnlab.train import cpu_processes

    big = Recurrent("lstm", 8, 512)
    assert set_threads("auto", big, batch=64, share=2) == max(1, policy.DEFAULT_THREADS // 2)
    assert set_threads(3, big, batch=64, share=2) == 3  # a number is the user's: kept
    assert cpu_processes(cfg_factory()) == 1
    assert cpu_processes(cfg_factory("trainer=ddp_cpu")) == 2
    assert cpu_processes(cfg_factory("trainer=ddp_cpu", "trainer.devices=3", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")) == 6


needs_native = pytest.mark.skipif(native.ops() is None, reason="native CPU loops did not build here")


@needs_native
def test_native_loops_use_the_same_threshold() -> None:
    ops = native.ops()
    assert ops.set_serial_below(-1) == policy.SERIAL_BELOW
    for batch, hidden, gates in [(8, 32, 4), (64, 512, 4), (32, 128, 3), (16, 64, 4)]:
        expected = policy.step_work(batch, hidden, gates) < policy.SERIAL_BELOW
        assert ops.runs_serial(batch, gates * hidden, hidden) == expected


@needs_native
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_serial_and_row_split_loops_match_torch_and_restore_the_threads(cell: str) -> None:
    """The same layer with its loop forced serial (one thread, whole batch) and forced parallel (at 2+
    threads: each thread runs its own rows through every step): both equal torch.nn in float64
    (outputs and every gradient), and torch's thread count is untouched after."""
    ops = native.ops()
    torch.manual_seed(0)
    ref = getattr(torch.nn, cell.upper())(6, 32, batch_first=True).double()
    layer = Recurrent.from_torch(ref)
    x = torch.randn(24, 7, 6, dtype=torch.float64, requires_grad=True)  # 24 rows: 3 blocks of 8 at 3 threads
    out_ref, _ = ref(x)
    grads_ref = torch.autograd.grad(out_ref.square().sum(), [x, *ref.parameters()])
    threads = torch.get_num_threads()
    previous = ops.set_serial_below(-1)
    try:
        for threshold in (1 << 62, 0):  # everything serial, then nothing serial
            ops.set_serial_below(threshold)
            assert ops.runs_serial(24, layer.cells[0].num_gates * 32, 32) == (threshold > 0)
            out, _ = layer(x)
            grads = torch.autograd.grad(out.square().sum(), [x, *layer.parameters()])
            torch.testing.assert_close(out, out_ref, rtol=0, atol=1e-12)
            for a, b in zip(grads, grads_ref):
                torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
            assert torch.get_num_threads() == threads
    finally:
        ops.set_serial_below(previous)
