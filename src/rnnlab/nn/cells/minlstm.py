"""minLSTM (Feng et al. 2024, "Were RNNs All We Needed?"): an LSTM whose gates read the input only,
with the forget and input gates normalised to sum to one, so the sequence is one linear recurrence
that a parallel scan computes at once.

    f_t = σ(U_f x_t + b_f),  i_t = σ(U_i x_t + b_i)
    f'_t = f_t / (f_t + i_t),  i'_t = i_t / (f_t + i_t)
    h̃_t = g(U_h x_t + b_h)                  g(v) = v + 1/2 (v >= 0), σ(v) (v < 0): positive
    h_t = f'_t ⊙ h_{t-1} + i'_t ⊙ h̃_t

No cell state and no output gate: h is the whole state. `sequence` runs the log-space scan of
rnnlab.nn.scan (scan=True, the default) or the loop of `step` (scan=False), the same numbers either
way. Gates stacked f, i, h in weight_ih (3H, I); one bias.

`MinRecurrentCell`, the base of both min cells, is here too: one bias, no W, the scan as `sequence`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnlab.nn.cells import register_cell
from rnnlab.nn.cells.base import RecurrentCell, State, check_bool
from rnnlab.nn.scan import g, log_g, scan_log


class MinRecurrentCell(RecurrentCell):
    """A cell h_t = a(x_t) ⊙ h_{t-1} + b(x_t): no weight_hh, one bias, the parallel scan.

    Args (besides RecurrentCell's):
        scan: run `sequence` as a log-space parallel scan (True) or as the loop of `step` (False).
    """

    num_states = 1

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, init: str = "uniform", scan: bool = True) -> None:
        super().__init__(input_size, hidden_size, bias=bias, init=init)
        self.scan = check_bool("scan", scan, type(self).__name__)
        self.weight_hh = None  # the recurrence is linear in h: no W
        self.bias_hh = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.init == "uniform":
            bound = 1.0 / math.sqrt(self.hidden_size)
            for p in (self.weight_ih, self.bias_ih):
                if p is not None:
                    nn.init.uniform_(p, -bound, bound)
        else:  # no W to make orthogonal: Xavier-uniform U per gate, zero bias
            with torch.no_grad():
                for u in self.weight_ih.split(self.hidden_size):
                    nn.init.xavier_uniform_(u)
                if self.bias_ih is not None:
                    self.bias_ih.zero_()

    def input_bias(self) -> Tensor | None:
        return self.bias_ih

    def log_coefficients(self, xw: Tensor) -> tuple[Tensor, Tensor]:
        """log a_t, log b_t of h_t = a_t ⊙ h_{t-1} + b_t, from xw: (T, B, gates·H) → two (T, B, H)."""
        raise NotImplementedError

    def sequence(self, xw: Tensor, state: State) -> State:
        if not self.scan:
            return super().sequence(xw, state)
        log_a, log_b = self.log_coefficients(xw)
        return (scan_log(log_a, log_b, state[0]),)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", scan={self.scan}"


@register_cell("minlstm")
class MinLSTMCell(MinRecurrentCell):
    num_gates = 3

    def step(self, xw_t: Tensor, state: State) -> tuple[Tensor, State]:
        (h,) = state
        pf, pi, v = xw_t.chunk(3, 1)
        f, i = torch.sigmoid(pf), torch.sigmoid(pi)
        h = (f * h + i * g(v)) / (f + i)
        return h, (h,)

    def log_coefficients(self, xw: Tensor) -> tuple[Tensor, Tensor]:
        pf, pi, v = xw.chunk(3, 2)
        diff = F.logsigmoid(pi) - F.logsigmoid(pf)  # log i - log f
        return F.logsigmoid(-diff), F.logsigmoid(diff) + log_g(v)  # log f' = -log(1 + i/f), log(i' h̃)
