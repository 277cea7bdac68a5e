"""LSTM cell (Hochreiter & Schmidhuber 1997, with a forget gate).

    i_t = σ(U_i x_t + W_i h_{t-1} + b_i)        input gate
    f_t = σ(U_f x_t + W_f h_{t-1} + b_f)        forget gate
    g_t = tanh(U_g x_t + W_g h_{t-1} + b_g)     candidate cell
    o_t = σ(U_o x_t + W_o h_{t-1} + b_o)        output gate
    c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
    h_t = o_t ⊙ tanh(c_t)

Gates are stacked i, f, g, o in weight_ih (4H, I) and weight_hh (4H, H), as torch.nn.LSTM.
The forget-gate bias starts at `forget_bias` (default 1.0: Gers et al. 2000, Jozefowicz et al.
2015) so that early in training the cell remembers rather than forgets; None keeps the plain init.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnlab.nn.cells import register_cell
from rnnlab.nn.cells.base import RecurrentCell, State
from rnnlab.nn.kernels import lstm_sequence
from rnnlab.nn.kernels.lstm import lstm_sequence_from_input


@register_cell("lstm")
class LSTMCell(RecurrentCell):
    num_gates = 4
    num_states = 2

    def __init__(self, input_size: int, hidden_size: int, forget_bias: float | None = 1.0, **kwargs) -> None:
        self.forget_bias = forget_bias
        super().__init__(input_size, hidden_size, **kwargs)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.forget_bias is not None and self.bias_ih is not None:
            H = self.hidden_size
            with torch.no_grad():  # b_f = b_ih[f] + b_hh[f] = forget_bias
                self.bias_ih[H : 2 * H].fill_(self.forget_bias)
                self.bias_hh[H : 2 * H].zero_()

    def extra_repr(self) -> str:
        return super().extra_repr() + f", forget_bias={self.forget_bias}"

    def step(self, xw_t: Tensor, state: State) -> tuple[Tensor, State]:
        h, c = state
        gates = torch.addmm(xw_t, h, self.weight_hh.t())
        i, f, g, o = gates.chunk(4, 1)
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        c = f * c + i * g
        h = o * torch.tanh(c)
        return h, (h, c)

    def fused_sequence(self, xw: Tensor, state: State) -> State:
        return lstm_sequence(xw, state[0], state[1], self.weight_hh)

    def run(self, x: Tensor, state: State) -> State:
        # A forward that no backward follows folds the input projection into the native loop (same
        # numbers, one product per step, no (time, batch, 4H) tensor), unless a subclass changed it.
        kind = type(self)
        if self.fused and kind.project_input is LSTMCell.project_input and kind.fused_sequence is LSTMCell.fused_sequence:
            out = lstm_sequence_from_input(x, self.weight_ih, self.input_bias(), *state, self.weight_hh)
            if out is not None:
                return out
        return super().run(x, state)
