"""Fused CPU loops for the LSTM, GRU and RNN kernels, compiled on first use (C++, `cells.cpp`).

Compiled once per machine with torch's JIT extension builder and cached (TORCH_EXTENSIONS_DIR,
default ~/.cache/torch_extensions). Where no compiler is present or the build fails, `ops()`
returns None with one warning and the kernels run their pure-PyTorch loops, which give the same
numbers. RNNLAB_NATIVE=0 turns the native loops off.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import torch

_SOURCE = Path(__file__).with_name("cells.cpp")
_state: dict[str, object] = {}


def _build():
    from torch.utils.cpp_extension import load

    flags = ["-O3", "-fopenmp"]
    # ATen's Vectorized picks its instruction set from CPU_CAPABILITY_*: match what torch uses here.
    capability = torch.backends.cpu.get_cpu_capability()
    if capability == "AVX512":  # 16-lane float32 pointwise passes, and the step GEMM's own kernel (__AVX512F__)
        flags += ["-mavx2", "-mfma", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq",
                  "-DCPU_CAPABILITY_AVX512", "-DCPU_CAPABILITY=AVX512"]
    elif capability == "AVX2":
        flags += ["-mavx2", "-mfma", "-DCPU_CAPABILITY_AVX2", "-DCPU_CAPABILITY=AVX2"]
    # torch's builder runs `ninja` from PATH; the `ninja` wheel (a dependency) puts it beside python.
    path = os.environ.get("PATH", "")
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), path])
    try:
        load(name="rnnlab_native", sources=[str(_SOURCE)], extra_cflags=flags, extra_ldflags=["-fopenmp"], is_python_module=False, verbose=False)
    finally:
        os.environ["PATH"] = path
    from rnnlab.nn.threads import SERIAL_BELOW

    torch.ops.rnnlab_native.set_serial_below(SERIAL_BELOW)
    if "RNNLAB_ONEDNN_FROM" in os.environ:
        value = os.environ["RNNLAB_ONEDNN_FROM"]
        if not value.isdigit():
            raise ValueError(f"RNNLAB_ONEDNN_FROM={value!r}: expected a non-negative whole number of "
                             "multiply-adds (0: every float32 product through oneDNN), or unset it")
        torch.ops.rnnlab_native.set_onednn_from(int(value))
    _state["onednn_from"] = torch.ops.rnnlab_native.set_onednn_from(-1)
    _state["onednn"] = _onednn_runs()
    if not _state["onednn"]:  # every product through BLAS, whatever RNNLAB_ONEDNN_FROM says
        torch.ops.rnnlab_native.set_onednn_from(NEVER)
        _state["onednn_from"] = NEVER
    _state["step_kernel"] = torch.ops.rnnlab_native.has_step_kernel()
    return torch.ops.rnnlab_native


NEVER = 1 << 62  # a threshold no product reaches: oneDNN off


def _onednn_runs() -> bool:
    """Whether torch's float32 entry into oneDNN (at::native::mkldnn_matmul) runs on this CPU: some
    builds refuse it on processors without AVX-512 or AVX-NE-CONVERT (it checks for bfloat16
    support whatever the dtype), and the products then go to BLAS."""
    previous = torch.ops.rnnlab_native.set_onednn_from(0)
    try:
        a = torch.ones(2, 2)
        return bool(torch.equal(torch.ops.rnnlab_native.matmul(a, a, None), a @ a))
    except RuntimeError:
        return False
    finally:
        torch.ops.rnnlab_native.set_onednn_from(previous)


def ops():
    """torch.ops.rnnlab_native (lstm_forward, lstm_forward_input, lstm_backward, gru_forward,
    gru_backward; matmul (a @ b + bias, oneDNN for large float32), step_matmul (a loop's per-step product); set_serial_below,
    runs_serial: the thread policy of rnnlab.nn.threads; set_onednn_from), or None."""
    if "ops" not in _state:
        _state["ops"] = None
        if os.environ.get("RNNLAB_NATIVE", "1") != "0":
            try:
                _state["ops"] = _build()
            except Exception as e:  # no compiler, no ninja, a failed build: the Python loops remain
                warnings.warn(f"rnnlab: native CPU kernels unavailable ({type(e).__name__}: {e}); "
                              "using the pure-PyTorch loops (same results, slower).", stacklevel=2)
    return _state["ops"] if _state.get("enabled", True) else None


def has_step_kernel() -> bool:
    """Whether the loops' own float32 step GEMM (AVX-512) is built: the LSTM's forward then folds its
    input projection into the loop (lstm_forward_input)."""
    return ops() is not None and bool(_state.get("step_kernel", False))


def onednn_available() -> bool:
    """Whether large float32 products can take oneDNN here (see `_onednn_runs`)."""
    return ops() is not None and bool(_state.get("onednn", False))


def onednn_from() -> int:
    """Multiply-adds (m·n·k) from which float32 CPU products take oneDNN, not BLAS (cells.cpp; the
    environment's RNNLAB_ONEDNN_FROM sets it at load)."""
    return _state.get("onednn_from", 1 << 22)


def set_onednn_from(n: int) -> int:
    """Set that size for this process (0: every float32 product through oneDNN; a huge one: none),
    e.g. to compare the two; returns the previous one. Where oneDNN cannot run it stays off."""
    ops()
    if not onednn_available():
        return onednn_from()
    previous, _state["onednn_from"] = onednn_from(), n
    if _state["ops"] is not None:
        torch.ops.rnnlab_native.set_onednn_from(n)
    return previous


def set_enabled(enabled: bool) -> None:
    """Use (True, default) or bypass (False) the native loops in this process, e.g. to compare."""
    _state["enabled"] = enabled
