"""One layer that turns any cell into a sequence model.

    Recurrent(cell="lstm", input_size=128, hidden_size=512, num_layers=2, dropout=0.2,
              bidirectional=True)(x, state=None, lengths=None) -> (output, state)

Stacking, inter-layer dropout, both directions, variable-length batches and an initial state,
for any `RecurrentCell`. Shapes follow torch.nn.RNN/LSTM/GRU so weights and states move between
the two (`from_torch` / `to_torch`), with two differences: `batch_first=True` by default, and the
Keras-style flags below.

Return contract: forward ALWAYS returns the pair (output, state), whatever the flags, so a caller's
unpacking and type hints never change:
- output: (batch, time, D*H) when `return_sequences` (default), else the last output of each
  sequence, (batch, D*H): the forward direction at its last real step beside the backward
  direction at t=0 (as Keras' Bidirectional).
- state: h_n (L*D, batch, H) for RNN/GRU, (h_n, c_n) for LSTM, as torch.nn; None when
  `return_state=False`.
(D = 2 if bidirectional else 1, L = num_layers, H = hidden_size.)

Variable length: with `lengths` (batch,), steps at t >= lengths[b] are padding. Padded outputs are
zero, padding never reaches a real step, and the final state of each sequence is its state at its own
last real step (for the backward direction: after reading its first step). The backward direction
reverses each sequence within its own length, so it starts at the sequence's last real step, as
torch.nn does with packed sequences.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnlab.nn.cells import CELLS, RecurrentCell, make_cell
from rnnlab.nn.cells.base import check_positive_int

StateLike = Tensor | tuple[Tensor, Tensor]
_TORCH_CLASSES = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


def reverse_padded(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse each sequence of x: (time, batch, F) within its own length; padding stays at the end."""
    if lengths is None:
        return x.flip(0)
    t = torch.arange(x.size(0), device=x.device).unsqueeze(1)  # (T, 1)
    index = torch.where(t < lengths, lengths - 1 - t, t)  # (T, B); an involution
    return x.gather(0, index.unsqueeze(2).expand_as(x))


class Recurrent(nn.Module):
    """A stack of recurrent cells over time.

    Args:
        cell: 'rnn', 'lstm' or 'gru'.
        input_size: features of x.
        hidden_size: H, features of h.
        num_layers: stacked layers; layer l+1 reads the (concatenated) outputs of layer l.
        dropout: dropout on the outputs of every layer but the last, in training, in [0, 1).
        bidirectional: also run each layer from the end to the start; outputs are concatenated.
        batch_first: x and output are (batch, time, features) if True, else (time, batch, features).
        return_sequences: output every step (True) or the last one of each sequence (False).
        return_state: return the final state (True) or None in its place (False).
        **cell_kwargs: passed to every cell, e.g. nonlinearity='relu' (rnn), forget_bias=1.0 (lstm),
            bias=False, init='orthogonal', fused=False (autograd loop instead of the BPTT kernel).
    """

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
        **cell_kwargs,
    ) -> None:
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"Recurrent: cell must be one of {sorted(CELLS)}, got {cell!r}.")
        check_positive_int("input_size", input_size, "Recurrent")
        check_positive_int("hidden_size", hidden_size, "Recurrent")
        check_positive_int("num_layers", num_layers, "Recurrent")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ValueError(f"Recurrent: dropout must be a number in [0, 1), got {dropout!r}.")
        self.cell, self.input_size, self.hidden_size = cell, input_size, hidden_size
        self.num_layers, self.dropout, self.bidirectional = num_layers, float(dropout), bidirectional
        self.batch_first, self.return_sequences, self.return_state = batch_first, return_sequences, return_state
        self.num_directions = 2 if bidirectional else 1
        self.output_size = self.num_directions * hidden_size
        # cells[l * D + d]: layer l, direction d (0 forward, 1 backward), as torch.nn orders its weights.
        self.cells = nn.ModuleList(
            make_cell(cell, input_size if layer == 0 else self.output_size, hidden_size, **cell_kwargs)
            for layer in range(num_layers)
            for _ in range(self.num_directions)
        )

    @property
    def num_states(self) -> int:
        return self.cells[0].num_states

    def extra_repr(self) -> str:
        return (
            f"cell={self.cell!r}, num_layers={self.num_layers}, dropout={self.dropout}, "
            f"bidirectional={self.bidirectional}, batch_first={self.batch_first}"
        )

    def reset_parameters(self) -> None:
        for cell in self.cells:
            cell.reset_parameters()

    def forward(
        self, x: Tensor, state: StateLike | None = None, lengths: Tensor | None = None
    ) -> tuple[Tensor, StateLike | None]:
        """x: (batch, time, input_size) if batch_first else (time, batch, input_size).

        state: initial h_0 (L*D, batch, H), or (h_0, c_0) for LSTM; None for zeros.
        lengths: (batch,) integer lengths, 1 <= lengths[b] <= time; None if no padding.
        Returns (output, state) as described in the module docstring.
        """
        T, B = self._check_input(x)
        x = x.transpose(0, 1) if self.batch_first else x  # time-major inside: (T, B, F)
        lengths = self._check_lengths(lengths, T, B, x.device)
        init = self._check_state(state, B, x)

        finals: list[tuple[Tensor, ...]] = []
        layer_input = x
        for layer in range(self.num_layers):
            outputs = []
            for d in range(self.num_directions):
                k = layer * self.num_directions + d
                cell: RecurrentCell = self.cells[k]
                s0 = cell.init_state(B, x) if init is None else tuple(s[k] for s in init)
                inp = layer_input if d == 0 else reverse_padded(layer_input, lengths)
                steps = cell.sequence(cell.project_input(inp), s0)  # each (T, B, H)
                finals.append(tuple(self._last_step(s, lengths) for s in steps))
                outputs.append(steps[0] if d == 0 else reverse_padded(steps[0], lengths))
            layer_input = torch.cat(outputs, 2) if len(outputs) > 1 else outputs[0]
            if self.dropout and self.training and layer < self.num_layers - 1:
                layer_input = F.dropout(layer_input, self.dropout, training=True)

        if self.return_sequences:
            output = layer_input
            if lengths is not None:  # padded steps output zero
                real = torch.arange(T, device=x.device).unsqueeze(1) < lengths  # (T, B)
                output = output.masked_fill(~real.unsqueeze(2), 0.0)
            output = output.transpose(0, 1) if self.batch_first else output
        else:  # last output of each sequence: the final h of the top layer, all directions
            output = torch.cat([f[0] for f in finals[-self.num_directions :]], 1)
        if not self.return_state:
            return output, None
        stacked = tuple(torch.stack(s) for s in zip(*finals))  # each (L*D, B, H)
        return output, (stacked if self.num_states == 2 else stacked[0])

    @staticmethod
    def _last_step(s: Tensor, lengths: Tensor | None) -> Tensor:
        """s: (T, B, H) -> s at each sequence's last real step: (B, H)."""
        if lengths is None:
            return s[-1]
        index = (lengths - 1).view(1, -1, 1).expand(1, s.size(1), s.size(2))
        return s.gather(0, index).squeeze(0)

    # ---- argument checks: one clear ValueError each ----
    def _check_input(self, x: Tensor) -> tuple[int, int]:
        layout = "(batch, time, features)" if self.batch_first else "(time, batch, features)"
        if x.dim() != 3:
            raise ValueError(f"Recurrent: input must be 3-D {layout}, got {x.dim()}-D shape {tuple(x.shape)}.")
        if x.size(2) != self.input_size:
            raise ValueError(
                f"Recurrent: input has {x.size(2)} features but input_size={self.input_size}; "
                f"input must be {layout}."
            )
        if x.numel() == 0:
            raise ValueError(f"Recurrent: input has an empty time or batch dimension: shape {tuple(x.shape)}.")
        return (x.size(1), x.size(0)) if self.batch_first else (x.size(0), x.size(1))

    def _check_lengths(self, lengths: Tensor | None, T: int, B: int, device) -> Tensor | None:
        if lengths is None:
            return None
        lengths = torch.as_tensor(lengths)
        if lengths.dtype.is_floating_point or lengths.dtype == torch.bool or lengths.shape != (B,):
            raise ValueError(
                f"Recurrent: lengths must be an integer tensor of shape ({B},), got {lengths.dtype} "
                f"shape {tuple(lengths.shape)}."
            )
        lo, hi = int(lengths.min()), int(lengths.max())
        if lo < 1:
            raise ValueError(f"Recurrent: lengths must be >= 1 (zero-length sequences have no output), got {lo}.")
        if hi > T:
            raise ValueError(f"Recurrent: lengths must be <= the input's time steps ({T}), got {hi}.")
        return None if lo == T else lengths.to(device=device, dtype=torch.long)

    def _check_state(self, state: StateLike | None, B: int, x: Tensor) -> tuple[Tensor, ...] | None:
        if state is None:
            return None
        packed = (state,) if isinstance(state, Tensor) else tuple(state)
        want = (self.num_layers * self.num_directions, B, self.hidden_size)
        form = "h_0" if self.num_states == 1 else "(h_0, c_0)"
        if len(packed) != self.num_states or any(tuple(s.shape) != want for s in packed):
            got = [tuple(s.shape) for s in packed]
            raise ValueError(f"Recurrent: state must be {form}, each of shape {want}, got {got}.")
        return tuple(s.to(x.dtype) for s in packed)

    # ---- weights to and from torch.nn ----
    @classmethod
    def from_torch(cls, module: nn.RNN | nn.LSTM | nn.GRU, **cell_kwargs) -> "Recurrent":
        """A Recurrent with the architecture and a copy of the weights of a torch.nn.RNN/LSTM/GRU."""
        kind = next((k for k, c in _TORCH_CLASSES.items() if type(module) is c), None)
        if kind is None:
            raise ValueError(f"Recurrent.from_torch: expected nn.RNN, nn.LSTM or nn.GRU, got {type(module).__name__}.")
        if getattr(module, "proj_size", 0):
            raise ValueError(f"Recurrent.from_torch: proj_size={module.proj_size} is not supported; use proj_size=0.")
        if kind == "rnn":
            cell_kwargs.setdefault("nonlinearity", module.nonlinearity)
        if kind == "lstm":
            cell_kwargs.setdefault("forget_bias", None)  # the weights are copied; keep them as they are
        ref = module.weight_ih_l0
        new = cls(kind, module.input_size, module.hidden_size, module.num_layers, module.dropout,
                  module.bidirectional, module.batch_first, bias=module.bias, **cell_kwargs)
        new = new.to(device=ref.device, dtype=ref.dtype)
        with torch.no_grad():
            for name, p in new._torch_names():
                p.copy_(getattr(module, name))
        return new

    def to_torch(self) -> nn.RNN | nn.LSTM | nn.GRU:
        """The equivalent torch.nn.RNN/LSTM/GRU with a copy of these weights."""
        kwargs = {"nonlinearity": self.cells[0].nonlinearity} if self.cell == "rnn" else {}
        ref = self.cells[0].weight_ih
        module = _TORCH_CLASSES[self.cell](
            self.input_size, self.hidden_size, self.num_layers, bias=self.cells[0].bias_ih is not None,
            batch_first=self.batch_first, dropout=self.dropout, bidirectional=self.bidirectional, **kwargs,
        ).to(device=ref.device, dtype=ref.dtype)
        with torch.no_grad():
            for name, p in self._torch_names():
                getattr(module, name).copy_(p)
        return module

    def _torch_names(self):
        """(torch.nn parameter name, our parameter) pairs, e.g. ('weight_hh_l1_reverse', cells[3].weight_hh)."""
        for k, cell in enumerate(self.cells):
            layer, d = divmod(k, self.num_directions)
            for name, p in cell.named_parameters(recurse=False):
                yield f"{name}_l{layer}{'_reverse' if d else ''}", p
