"""The interface every cell shares.

A cell owns the parameters of one recurrence and knows three things:

- `init_state(batch, like)`: the zero state for a batch;
- `project_input(x)`: U x_t + b for every time step at once (one big matmul, hoisted out of the loop);
- `step(xw_t, state) -> (h_t, new_state)`: one step of the recurrence on a projected input.

`sequence(xw, state)` runs the recurrence over all steps. The base version loops over `step`
and lets autograd unroll the graph (BPTT): a new cell needs nothing more. A cell may add a
hand-written forward and backward (`fused_sequence`, see `rnnlab.nn.kernels`) as a speed-up; it is
used by default when present and gives the same numbers. The layer calls `run(x, state)`, which is
`sequence(project_input(x), state)` unless a kernel folds the projection into its own loop.

Weights are named and laid out as in torch.nn (weight_ih: (gates*H, I), weight_hh: (gates*H, H),
gates stacked in torch's order), so weights copy between the two without reshuffling.
State is a tuple of tensors: (h,) for RNN and GRU, (h, c) for LSTM, each (batch, hidden).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from rnnlab.nn.kernels.common import linear

State = tuple[Tensor, ...]
INITS = ("uniform", "orthogonal")


def check_positive_int(name: str, value: object, owner: str) -> int:
    """TypeError for a non-integer (bool included), ValueError for one <= 0: torch.nn's types."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner}: {name} must be a positive integer, got {value!r} ({type(value).__name__}).")
    if value <= 0:
        raise ValueError(f"{owner}: {name} must be a positive integer, got {value!r}.")
    return value


def check_bool(name: str, value: object, owner: str) -> bool:
    """TypeError unless a real bool, as torch.nn: a string like "False" is truthy and would flip the flag."""
    if not isinstance(value, bool):
        raise TypeError(f"{owner}: {name} must be True or False, got {value!r} ({type(value).__name__}).")
    return value


class RecurrentCell(nn.Module):
    """Base class: parameters, initialisation, input projection and the time loop.

    Args:
        input_size: features of x_t.
        hidden_size: H, the size of h_t.
        bias: learn the biases b_ih and b_hh (torch.nn keeps two; their sum is the b of the equations).
        init: 'uniform' (U(-1/sqrt(H), 1/sqrt(H)) for every tensor, as torch.nn) or 'orthogonal'
            (orthogonal W per gate, Xavier-uniform U per gate, zero biases, as Keras and haste).
        fused: None (default): run `sequence` through the cell's hand-written BPTT kernel if it has
            one (`has_kernel()`), else through autograd's unrolled loop of `step`; True: the kernel
            (an error for a cell without one); False: the unrolled loop.
    """

    num_gates: int = 1  # gate blocks stacked in weight_ih / weight_hh
    num_states: int = 1  # tensors in the state tuple

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        init: str = "uniform",
        fused: bool | None = None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self.input_size = check_positive_int("input_size", input_size, name)
        self.hidden_size = check_positive_int("hidden_size", hidden_size, name)
        check_bool("bias", bias, name)
        if init not in INITS:
            raise ValueError(f"{name}: init must be one of {INITS}, got {init!r}.")
        if fused is not None:
            check_bool("fused", fused, name)
        if fused and not self.has_kernel():
            raise ValueError(
                f"{name}: fused=True needs a hand-written kernel (a `fused_sequence` written with this "
                f"cell's `step`), and {name} has none; leave fused unset (None) to run autograd's loop of `step`."
            )
        self.init = init
        self.fused = self.has_kernel() if fused is None else fused
        gates = self.num_gates * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(gates, input_size))  # U
        self.weight_hh = nn.Parameter(torch.empty(gates, hidden_size))  # W
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(gates))
            self.bias_hh = nn.Parameter(torch.empty(gates))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-draw every parameter according to `self.init`."""
        H = self.hidden_size
        if self.init == "uniform":
            bound = 1.0 / math.sqrt(H)
            for p in (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh):  # torch.nn's order
                if p is not None:
                    nn.init.uniform_(p, -bound, bound)
        else:
            with torch.no_grad():
                for w in self.weight_hh.split(H):
                    nn.init.orthogonal_(w)
                for u in self.weight_ih.split(H):
                    nn.init.xavier_uniform_(u)
                if self.bias_ih is not None:
                    self.bias_ih.zero_()
                    self.bias_hh.zero_()

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, bias={self.bias_ih is not None}, init={self.init!r}"

    def init_state(self, batch: int, like: Tensor) -> State:
        """Zero state for `batch` sequences, with the dtype and device of `like`."""
        zeros = like.new_zeros(batch, self.hidden_size)
        return tuple(zeros for _ in range(self.num_states))

    def input_bias(self) -> Tensor | None:
        """The bias added in `project_input` (RNN and LSTM fold both biases in here)."""
        if self.bias_ih is None:
            return None
        return self.bias_ih + self.bias_hh

    def project_input(self, x: Tensor) -> Tensor:
        """x: (..., input_size) -> U x + b: (..., num_gates * hidden_size)."""
        return linear(x, self.weight_ih, self.input_bias())  # F.linear, large float32 products via oneDNN

    def step(self, xw_t: Tensor, state: State) -> tuple[Tensor, State]:
        """One step. xw_t: (batch, num_gates * H) from `project_input`; state: tuple of (batch, H)."""
        raise NotImplementedError

    def run(self, x: Tensor, state: State) -> State:
        """x: (time, batch, input_size) -> every state at every step, as `sequence`: the layer's call.
        Here `sequence(project_input(x))`; a kernel that projects inside its loop overrides it."""
        return self.sequence(self.project_input(x), state)

    def sequence(self, xw: Tensor, state: State) -> State:
        """Run the recurrence over xw: (time, batch, num_gates * H) from `state`.

        Returns every state tensor at every step, each (time, batch, H); h is the first.
        """
        if self.fused:
            return self.fused_sequence(xw, state)
        steps: list[State] = []
        for xw_t in xw.unbind(0):  # unbind, not xw[t]: indexing makes backward build a full-size zero grad per step
            _, state = self.step(xw_t, state)
            steps.append(state)
        return tuple(torch.stack(s) for s in zip(*steps))

    def fused_sequence(self, xw: Tensor, state: State) -> State:
        """The same as the autograd loop, through a hand-written forward and backward (optional)."""
        raise NotImplementedError

    @classmethod
    def has_kernel(cls) -> bool:
        """True when `fused_sequence` is written for this cell's `step`: defined by the class that
        defines `step` or below it. A subclass that changes `step` (a LayerNorm LSTM from LSTMCell)
        thus never runs its parent's kernel, which would compute the parent's equations."""
        kernel = next(k for k in cls.__mro__ if "fused_sequence" in k.__dict__)
        step = next(k for k in cls.__mro__ if "step" in k.__dict__)
        return kernel is not RecurrentCell and issubclass(kernel, step)

    def forward(self, x_t: Tensor, state: Tensor | State | None = None) -> tuple[Tensor, Tensor | State]:
        """One step from raw input, torch.nn.*Cell style.

        x_t: (batch, input_size); state: h (batch, H) for RNN/GRU, (h, c) for LSTM, or None for zeros.
        Returns (h_t, new_state) with new_state in the same form as `state`.
        """
        name = type(self).__name__
        if x_t.dim() != 2 or x_t.size(1) != self.input_size:
            raise ValueError(
                f"{name}: x_t must be (batch, {self.input_size}), got shape {tuple(x_t.shape)}."
            )
        if state is None:
            state = self.init_state(x_t.size(0), x_t)
        packed = (state,) if isinstance(state, Tensor) else tuple(state)
        want = (x_t.size(0), self.hidden_size)
        if len(packed) != self.num_states or any(tuple(s.shape) != want for s in packed):
            got = [tuple(s.shape) for s in packed]
            raise ValueError(f"{name}: state must be {self.num_states} tensor(s) of shape {want}, got {got}.")
        h, new = self.step(self.project_input(x_t), packed)
        return h, (new[0] if self.num_states == 1 else new)
