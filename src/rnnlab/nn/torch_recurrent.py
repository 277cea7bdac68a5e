"""torch.nn.RNN/LSTM/GRU behind `Recurrent`'s interface: the baseline to compare against.

Same constructor and the same (output, state) contract, including `lengths` (through packed
sequences), `return_sequences` and `return_state`. Options that torch.nn has no knob for are
honoured at initialisation: `forget_bias` (LSTM) and `init` ('uniform' is torch's own).
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rnnlab.nn.recurrent import _TORCH_CLASSES, Recurrent, StateLike


class TorchRecurrent(nn.Module):
    """Args as `Recurrent`; cell_kwargs may be nonlinearity (rnn), forget_bias (lstm), bias, init."""

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        dropout: float = 0.0,
        bidirectional: bool = False,
        batch_first: bool = True,
        return_sequences: bool = True,
        return_state: bool = True,
        nonlinearity: str = "tanh",
        forget_bias: float | None = 1.0,
        bias: bool = True,
        init: str = "uniform",
    ) -> None:
        super().__init__()
        if not isinstance(cell, str) or cell not in _TORCH_CLASSES:  # e.g. layernorm_lstm: rnnlab's cells only
            raise ValueError(
                f"TorchRecurrent: cell must be one of {sorted(_TORCH_CLASSES)}, the cells torch.nn has a layer for, "
                f"got {cell!r}; Recurrent (layer=rnnlab in a config) runs every registered cell."
            )
        kwargs = {"nonlinearity": nonlinearity} if cell == "rnn" else {}
        # Recurrent checks every argument; build one, weightless, for its checks (torch.nn warns itself).
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            Recurrent(cell, input_size, hidden_size, num_layers, dropout, bidirectional, batch_first, return_sequences,
                      return_state, bias=bias, init=init, **kwargs,
                      **({"forget_bias": forget_bias} if cell == "lstm" else {}))
        self.rnn = _TORCH_CLASSES[cell](input_size, hidden_size, num_layers, bias=bias, batch_first=batch_first,
                                        dropout=dropout, bidirectional=bidirectional, **kwargs)
        self.cell, self.hidden_size, self.num_layers = cell, hidden_size, num_layers
        self.batch_first, self.return_sequences, self.return_state = batch_first, return_sequences, return_state
        self.num_directions = 2 if bidirectional else 1
        self.output_size = self.num_directions * hidden_size
        self.forget_bias, self.init = forget_bias, init
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.rnn.reset_parameters()
        H = self.hidden_size
        with torch.no_grad():
            for name, p in self.rnn.named_parameters():
                if self.init == "orthogonal":
                    if name.startswith("weight_hh"):
                        for w in p.split(H):
                            nn.init.orthogonal_(w)
                    elif name.startswith("weight_ih"):
                        for u in p.split(H):
                            nn.init.xavier_uniform_(u)
                    else:
                        p.zero_()
                if self.cell == "lstm" and self.forget_bias is not None and name.startswith("bias"):
                    p[H : 2 * H] = self.forget_bias if name.startswith("bias_ih") else 0.0

    def forward(
        self, x: Tensor | PackedSequence, state: StateLike | None = None, lengths: Tensor | None = None
    ) -> tuple[Tensor | PackedSequence, StateLike | None]:
        """As `Recurrent.forward`."""
        if lengths is not None:
            T = x.size(1 if self.batch_first else 0)
            packed = pack_padded_sequence(x, torch.as_tensor(lengths).cpu(), self.batch_first, enforce_sorted=False)
            out, new_state = self.rnn(packed, state)
            out, _ = pad_packed_sequence(out, self.batch_first, total_length=T)
        else:
            out, new_state = self.rnn(x, state)
        if not self.return_sequences:
            h = new_state[0] if self.cell == "lstm" else new_state
            out = torch.cat(list(h[-self.num_directions :]), -1)  # (batch, D*H), or (D*H,) unbatched
        return out, (new_state if self.return_state else None)

