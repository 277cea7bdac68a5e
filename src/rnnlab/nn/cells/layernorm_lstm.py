"""Layer-normalised LSTM (Ba, Kiros & Hinton 2016, "Layer Normalization", arXiv:1607.06450: the LSTM
of its supplementary material, which applies section 3.1, LN in recurrent networks, to each gate).

    (i, f, g, o) = LN(W h_{t-1}; α_h, β_h) + LN(U x_t; α_x, β_x) + b     each LN over all 4H gates
    c_t = σ(f) ⊙ c_{t-1} + σ(i) ⊙ tanh(g)
    h_t = σ(o) ⊙ tanh(LN(c_t; α_c, β_c))

LN(a; α, β) = α ⊙ (a − mean(a)) / sqrt(var(a) + ε) + β over the features of one example at one
step, so the recurrent and the input contributions are each rescaled to zero mean and unit variance
before they meet: the gates see the same scale whatever the step and the weights' size, which
steadies training without depending on the batch (unlike batch norm). Gains start at 1, shifts at 0.

Gates are stacked i, f, g, o as in LSTMCell, whose weights, init and forget-gate bias it keeps.
It has no hand-written kernel: `sequence` runs autograd's loop of `step`, and it has no torch.nn
counterpart (`Recurrent.to_torch` refuses it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnlab.nn.cells import register_cell
from rnnlab.nn.cells.base import State
from rnnlab.nn.cells.lstm import LSTMCell


@register_cell("layernorm_lstm")
class LayerNormLSTMCell(LSTMCell):
    def __init__(self, input_size: int, hidden_size: int, eps: float = 1e-5, **kwargs) -> None:
        super().__init__(input_size, hidden_size, **kwargs)
        self.ln_x = nn.LayerNorm(4 * hidden_size, eps=eps)  # α_x, β_x
        self.ln_h = nn.LayerNorm(4 * hidden_size, eps=eps)  # α_h, β_h
        self.ln_c = nn.LayerNorm(hidden_size, eps=eps)  # α_c, β_c

    def reset_parameters(self) -> None:
        super().reset_parameters()
        for ln in ("ln_x", "ln_h", "ln_c"):  # absent during the base constructor's first call
            if hasattr(self, ln):
                getattr(self, ln).reset_parameters()

    def project_input(self, x: Tensor) -> Tensor:
        """LN(U x_t) + b for every step at once: LN acts on each step alone, so it hoists like U x."""
        ux = self.ln_x(F.linear(x, self.weight_ih))
        b = self.input_bias()
        return ux if b is None else ux + b

    def step(self, xw_t: Tensor, state: State) -> tuple[Tensor, State]:
        h, c = state
        gates = xw_t + self.ln_h(h @ self.weight_hh.t())
        i, f, g, o = gates.chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(self.ln_c(c))
        return h, (h, c)
