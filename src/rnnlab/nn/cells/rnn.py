"""Elman RNN cell.

    h_t = φ(b + W h_{t-1} + U x_t),   φ ∈ {tanh, relu}

U = weight_ih (H, I), W = weight_hh (H, H), b = bias_ih + bias_hh; as torch.nn.RNN.
The output layer y_t = c + V h_t belongs to the task, not the cell.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnlab.nn.cells import register_cell
from rnnlab.nn.cells.base import RecurrentCell, State
from rnnlab.nn.kernels import rnn_sequence

NONLINEARITIES = ("tanh", "relu")


@register_cell("rnn")
class RNNCell(RecurrentCell):
    num_gates = 1
    num_states = 1

    def __init__(self, input_size: int, hidden_size: int, nonlinearity: str = "tanh", **kwargs) -> None:
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(f"RNNCell: nonlinearity must be one of {NONLINEARITIES}, got {nonlinearity!r}.")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, **kwargs)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", nonlinearity={self.nonlinearity!r}"

    def step(self, xw_t: Tensor, state: State) -> tuple[Tensor, State]:
        (h,) = state
        pre = torch.addmm(xw_t, h, self.weight_hh.t())  # b + U x_t + W h_{t-1}
        h = torch.tanh(pre) if self.nonlinearity == "tanh" else torch.relu(pre)
        return h, (h,)

    def fused_sequence(self, xw: Tensor, state: State) -> State:
        return (rnn_sequence(xw, state[0], self.weight_hh, self.nonlinearity),)
