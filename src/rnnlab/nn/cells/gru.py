"""GRU cell (Cho et al. 2014), exactly as torch.nn.GRU defines it.

    r_t = σ(U_r x_t + b_ir + W_r h_{t-1} + b_hr)          reset gate
    z_t = σ(U_z x_t + b_iz + W_z h_{t-1} + b_hz)          update gate
    n_t = tanh(U_n x_t + b_in + r_t ⊙ (W_n h_{t-1} + b_hn))  candidate
    h_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}

Gates are stacked r, z, n in weight_ih (3H, I) and weight_hh (3H, H). b_hn sits inside r_t ⊙ (...),
so unlike RNN and LSTM the two biases cannot be folded into one: `project_input` adds b_ih only,
`step` adds b_hh.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnlab.nn.cells import register_cell
from rnnlab.nn.cells.base import RecurrentCell, State
from rnnlab.nn.kernels import gru_sequence


@register_cell("gru")
class GRUCell(RecurrentCell):
    num_gates = 3
    num_states = 1

    def input_bias(self) -> Tensor | None:
        return self.bias_ih

    def step(self, xw_t: Tensor, state: State) -> tuple[Tensor, State]:
        (h,) = state
        hw = F.linear(h, self.weight_hh, self.bias_hh)  # W h_{t-1} + b_h
        x_r, x_z, x_n = xw_t.chunk(3, 1)
        h_r, h_z, h_n = hw.chunk(3, 1)
        r = torch.sigmoid(x_r + h_r)
        z = torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * h_n)
        h = n + z * (h - n)  # = (1 - z) n + z h
        return h, (h,)

    def fused_sequence(self, xw: Tensor, state: State) -> State:
        return (gru_sequence(xw, state[0], self.weight_hh, self.bias_hh),)
