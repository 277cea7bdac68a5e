"""minGRU (Feng et al. 2024, "Were RNNs All We Needed?"): a GRU whose gate and candidate read the
input only, so the whole sequence is one linear recurrence that a parallel scan computes at once.

    z_t = σ(U_z x_t + b_z)                  update gate
    h̃_t = g(U_h x_t + b_h)                  candidate, g(v) = v + 1/2 (v >= 0), σ(v) (v < 0): positive
    h_t = (1 - z_t) ⊙ h_{t-1} + z_t ⊙ h̃_t

No W: a step has no matrix product with h_{t-1}. `sequence` runs the log-space scan of
rnnlab.nn.scan over all steps (scan=True, the default: training and evaluation) or the loop of
`step` (scan=False); both give the same numbers (tested in float64). Generation feeds one step at a
time either way. Gates stacked z, h in weight_ih (2H, I); one bias.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnlab.nn.cells import register_cell
from rnnlab.nn.cells.base import State
from rnnlab.nn.cells.minlstm import MinRecurrentCell
from rnnlab.nn.scan import g, log_g


@register_cell("mingru")
class MinGRUCell(MinRecurrentCell):
    num_gates = 2

    def step(self, xw_t: Tensor, state: State) -> tuple[Tensor, State]:
        (h,) = state
        k, v = xw_t.chunk(2, 1)
        z = torch.sigmoid(k)
        h = (1 - z) * h + z * g(v)
        return h, (h,)

    def log_coefficients(self, xw: Tensor) -> tuple[Tensor, Tensor]:
        k, v = xw.chunk(2, 2)
        return F.logsigmoid(-k), F.logsigmoid(k) + log_g(v)  # log(1 - z), log(z h̃)


