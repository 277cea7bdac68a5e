"""One layer that turns any cell into a sequence model.

    Recurrent(cell="lstm", input_size=128, hidden_size=512, num_layers=2, dropout=0.2,
              bidirectional=True)(x, state=None, lengths=None) -> (output, state)

Stacking, inter-layer dropout, both directions, variable-length batches and an initial state,
for any `RecurrentCell`. Inputs, states and outputs follow torch.nn.RNN/LSTM/GRU (batched 3-D or
unbatched 2-D input, a PackedSequence in and out, the same state shapes, the same errors for the
same mistakes), so weights and states move between the two (`from_torch` / `to_torch`); the
differences are `batch_first=True` by default, `lengths`, and the Keras-style flags below.

Return contract: forward ALWAYS returns the pair (output, state), whatever the flags, so a caller's
unpacking and type hints never change:
- output: (batch, time, D*H) when `return_sequences` (default), else the last output of each
  sequence, (batch, D*H): the forward direction at its last real step beside the backward
  direction at t=0 (as Keras' Bidirectional). Unbatched input drops the batch dimension.
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

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rnnlab.nn.cells import CELLS, RecurrentCell, make_cell
from rnnlab.nn.cells.base import check_bool, check_positive_int

StateLike = Tensor | tuple[Tensor, Tensor]
_TORCH_CLASSES = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
_CONVERT = {torch.float32: ".float()", torch.float64: ".double()", torch.float16: ".half()", torch.bfloat16: ".bfloat16()"}


class RecurrentInputError(ValueError, RuntimeError):
    """A bad input, state or lengths given to `Recurrent.forward`, in one paragraph naming it and the fix.

    Both a ValueError (rnnlab's type for a bad argument) and a RuntimeError (what torch.nn.RNN/LSTM/GRU
    raise for most of these mistakes), so code written against either catches it."""


def _convert(dtype: torch.dtype) -> str:
    """How to turn a tensor or module into `dtype`: '.double()' or '.to(torch.int8)'."""
    return _CONVERT.get(dtype, f".to({dtype})")


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
        cell: a registered cell name ('rnn', 'lstm', 'gru', 'layernorm_lstm', or yours, see
            `rnnlab.nn.cells.register_cell`) or a RecurrentCell subclass.
        input_size: features of x.
        hidden_size: H, features of h.
        num_layers: stacked layers; layer l+1 reads the (concatenated) outputs of layer l.
        dropout: dropout on the outputs of every layer but the last, in training, in [0, 1]
            (as torch.nn: with num_layers=1 it does nothing, and a warning says so).
        bidirectional: also run each layer from the end to the start; outputs are concatenated.
        batch_first: x and output are (batch, time, features) if True, else (time, batch, features).
        return_sequences: output every step (True) or the last one of each sequence (False).
        return_state: return the final state (True) or None in its place (False).
        proj_size: torch.nn.LSTM's projection; only 0 (none) is supported.
        device, dtype: where and in which floating dtype the parameters live, as torch.nn's.
        **cell_kwargs: passed to every cell, e.g. nonlinearity='relu' (rnn), forget_bias=1.0 (lstm),
            bias=False, init='orthogonal', fused=False (autograd loop instead of the BPTT kernel).
    """

    def __init__(
        self,
        cell: str | type[RecurrentCell],
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        dropout: float = 0.0,
        bidirectional: bool = False,
        batch_first: bool = True,
        return_sequences: bool = True,
        return_state: bool = True,
        proj_size: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **cell_kwargs,
    ) -> None:
        super().__init__()
        if not (isinstance(cell, type) and issubclass(cell, RecurrentCell)) and not (isinstance(cell, str) and cell in CELLS):
            raise ValueError(
                f"Recurrent: cell must be one of {sorted(CELLS)} (or a RecurrentCell subclass; register "
                f"a name with rnnlab.nn.register_cell), got {cell!r}."
            )
        check_positive_int("input_size", input_size, "Recurrent")
        check_positive_int("hidden_size", hidden_size, "Recurrent")
        check_positive_int("num_layers", num_layers, "Recurrent")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout <= 1:
            raise ValueError(f"Recurrent: dropout must be a number in [0, 1], got {dropout!r}.")
        for name, flag in [("bidirectional", bidirectional), ("batch_first", batch_first),
                           ("return_sequences", return_sequences), ("return_state", return_state)]:
            check_bool(name, flag, "Recurrent")
        if proj_size != 0:
            raise ValueError(f"Recurrent: proj_size={proj_size!r} is not supported (no LSTM projection); use 0.")
        if dropout > 0 and num_layers == 1:  # torch.nn warns alike: the dropout would silently do nothing
            warnings.warn(
                f"Recurrent: dropout={dropout} with num_layers=1 does nothing: dropout applies to the outputs "
                "of every layer but the last. Add dropout after the layer, or stack num_layers > 1.",
                UserWarning, stacklevel=2,
            )
        self.cell, self.input_size, self.hidden_size = cell, input_size, hidden_size
        self.num_layers, self.dropout, self.bidirectional = num_layers, float(dropout), bidirectional
        self.batch_first, self.return_sequences, self.return_state = batch_first, return_sequences, return_state
        self.bias, self.proj_size = cell_kwargs.get("bias", True), 0  # torch.nn's attributes
        if cell == "rnn":
            self.nonlinearity = cell_kwargs.get("nonlinearity", "tanh")
        self.num_directions = 2 if bidirectional else 1
        self.output_size = self.num_directions * hidden_size
        # cells[l * D + d]: layer l, direction d (0 forward, 1 backward), as torch.nn orders its weights.
        self.cells = nn.ModuleList(
            make_cell(cell, input_size if layer == 0 else self.output_size, hidden_size, **cell_kwargs)
            for layer in range(num_layers)
            for _ in range(self.num_directions)
        )
        if device is not None or dtype is not None:
            self.to(device=device, dtype=dtype)

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

    def flatten_parameters(self) -> None:
        """Does nothing: kept so code written for torch.nn (which packs weights for cuDNN) runs as is."""

    def forward(
        self, x: Tensor | PackedSequence, state: StateLike | None = None, lengths: Tensor | None = None
    ) -> tuple[Tensor | PackedSequence, StateLike | None]:
        """x: (batch, time, input_size) if batch_first else (time, batch, input_size); unbatched
        (time, input_size); or a PackedSequence (then the output is one too, as torch.nn).

        state: initial h_0 (L*D, batch, H), or (h_0, c_0) for LSTM; (L*D, H) for unbatched input;
            None for zeros. Same dtype and device as x.
        lengths: (batch,) integer lengths, 1 <= lengths[b] <= time; None if no padding (and for
            unbatched or packed input).
        Returns (output, state) as described in the module docstring.
        """
        device_type = (x.data if isinstance(x, PackedSequence) else x).device.type
        if torch.is_autocast_enabled(device_type):
            # The kernels' loops keep one precision: run the layer in the weights' dtype, autocast off.
            dtype = self.cells[0].weight_ih.dtype
            with torch.autocast(device_type, enabled=False):
                cast = (lambda s: s.to(dtype)) if state is None or isinstance(state, Tensor) else (
                    lambda s: tuple(t.to(dtype) for t in s))
                return self.forward(x.to(dtype), None if state is None else cast(state), lengths)
        if isinstance(x, PackedSequence):
            return self._forward_packed(x, state, lengths)
        return self._forward(x, state, lengths, self.batch_first)

    def _forward(
        self, x: Tensor, state: StateLike | None, lengths: Tensor | None, batch_first: bool
    ) -> tuple[Tensor, StateLike | None]:
        """`forward` for a tensor input laid out as `batch_first` says."""
        batched = self._check_input(x, batch_first)
        if batched:
            # Time-major inside: (T, B, F). Copied here, where it is F wide, so that each layer's input
            # projection comes out time-major and contiguous (not a 4H-wide copy later, per layer).
            x = x.transpose(0, 1).contiguous() if batch_first else x
        elif lengths is not None:
            raise RecurrentInputError(
                "Recurrent: lengths apply to a batch; an unbatched (time, features) input is one whole "
                "sequence: pass lengths=None, or slice the input to its length."
            )
        else:
            x = x.unsqueeze(1)  # (T, 1, F)
        T, B = x.shape[:2]
        lengths = self._check_lengths(lengths, T, B, x.device)
        init = self._check_state(state, B, x, batched)
        top, finals = self._run(x, init, lengths)

        if self.return_sequences:
            output = top
            if lengths is not None:  # padded steps output zero
                real = torch.arange(T, device=x.device).unsqueeze(1) < lengths  # (T, B)
                output = output.masked_fill(~real.unsqueeze(2), 0.0)
            output = output.transpose(0, 1) if batch_first and batched else output
            output = output if batched else output.squeeze(1)
        else:  # last output of each sequence: the final h of the top layer, all directions
            output = torch.cat([f[0] for f in finals[-self.num_directions :]], 1)
            output = output if batched else output.squeeze(0)
        if not self.return_state:
            return output, None
        stacked = tuple(torch.stack(s) if batched else torch.stack(s).squeeze(1) for s in zip(*finals))
        return output, (stacked if self.num_states == 2 else stacked[0])  # each (L*D, B, H)

    def _run(
        self, x: Tensor, init: tuple[Tensor, ...] | None, lengths: Tensor | None
    ) -> tuple[Tensor, list[tuple[Tensor, ...]]]:
        """x: (T, B, F) -> (top layer's outputs (T, B, D*H), final state of every cell, each (B, H))."""
        finals: list[tuple[Tensor, ...]] = []
        layer_input = x
        for layer in range(self.num_layers):
            outputs = []
            for d in range(self.num_directions):
                k = layer * self.num_directions + d
                cell: RecurrentCell = self.cells[k]
                s0 = cell.init_state(x.size(1), x) if init is None else tuple(s[k] for s in init)
                inp = layer_input if d == 0 else reverse_padded(layer_input, lengths)
                steps = cell.run(inp, s0)  # each (T, B, H)
                finals.append(tuple(self._last_step(s, lengths) for s in steps))
                outputs.append(steps[0] if d == 0 else reverse_padded(steps[0], lengths))
            layer_input = torch.cat(outputs, 2) if len(outputs) > 1 else outputs[0]
            if self.dropout and self.training and layer < self.num_layers - 1:
                layer_input = F.dropout(layer_input, self.dropout, training=True)
        return layer_input, finals

    def _forward_packed(
        self, x: PackedSequence, state: StateLike | None, lengths: Tensor | None
    ) -> tuple[Tensor | PackedSequence, StateLike | None]:
        """A PackedSequence in, one out (with the input's batch order), as torch.nn."""
        if lengths is not None:
            raise RecurrentInputError(
                "Recurrent: a PackedSequence carries its own lengths; pass lengths=None with it."
            )
        padded, lens = pad_packed_sequence(x)  # (T, B, F) time-major, batch in the caller's order
        output, final = self._forward(padded, state, lens, batch_first=False)
        if not self.return_sequences:  # (batch, D*H): not a sequence, so a plain tensor
            return output, final
        order = x.sorted_indices
        if order is not None:
            output, lens = output.index_select(1, order), lens.index_select(0, order.cpu())
        packed = pack_padded_sequence(output, lens, enforce_sorted=True)
        return PackedSequence(packed.data, x.batch_sizes, x.sorted_indices, x.unsorted_indices), final

    @staticmethod
    def _last_step(s: Tensor, lengths: Tensor | None) -> Tensor:
        """s: (T, B, H) -> s at each sequence's last real step: (B, H)."""
        if lengths is None:
            return s[-1]
        index = (lengths - 1).view(1, -1, 1).expand(1, s.size(1), s.size(2))
        return s.gather(0, index).squeeze(0)

    # ---- argument checks: one clear error each ----
    def _check_input(self, x: Tensor, batch_first: bool) -> bool:
        """Checks x; True if batched (3-D), False if unbatched (2-D)."""
        layout = "(batch, time, features)" if batch_first else "(time, batch, features)"
        if not isinstance(x, Tensor):
            raise TypeError(f"Recurrent: input must be a Tensor or a PackedSequence, got {type(x).__name__}.")
        if x.dim() not in (2, 3):
            raise RecurrentInputError(
                f"Recurrent: input must be 3-D {layout} or 2-D (time, features) for one unbatched sequence, "
                f"got {x.dim()}-D shape {tuple(x.shape)}."
            )
        if x.size(-1) != self.input_size:
            raise RecurrentInputError(
                f"Recurrent: input has {x.size(-1)} features but input_size={self.input_size}; "
                f"input must be {layout}."
            )
        weight = self.cells[0].weight_ih
        if x.dtype != weight.dtype:
            raise RecurrentInputError(
                f"Recurrent: input dtype {x.dtype} does not match the weights' dtype {weight.dtype}; convert "
                f"the input (x{_convert(weight.dtype)}) or the module (module{_convert(x.dtype)})."
            )
        if x.size(1 if batch_first and x.dim() == 3 else 0) == 0:
            raise RecurrentInputError(
                f"Recurrent: input has no time steps (shape {tuple(x.shape)}); a sequence needs at least one "
                "step (torch.nn refuses it too)."
            )
        return x.dim() == 3

    def _check_lengths(self, lengths: Tensor | None, T: int, B: int, device) -> Tensor | None:
        if lengths is None:
            return None
        lengths = torch.as_tensor(lengths)
        if lengths.dtype.is_floating_point or lengths.dtype == torch.bool or lengths.shape != (B,):
            raise RecurrentInputError(
                f"Recurrent: lengths must be an integer tensor of shape ({B},), got {lengths.dtype} "
                f"shape {tuple(lengths.shape)}."
            )
        if B == 0:
            return None
        lo, hi = int(lengths.min()), int(lengths.max())
        if lo < 1:
            raise RecurrentInputError(
                f"Recurrent: lengths must be >= 1 (zero-length sequences have no output), got {lo}."
            )
        if hi > T:
            raise RecurrentInputError(f"Recurrent: lengths must be <= the input's time steps ({T}), got {hi}.")
        return None if lo == T else lengths.to(device=device, dtype=torch.long)

    def _check_state(self, state: StateLike | None, B: int, x: Tensor, batched: bool) -> tuple[Tensor, ...] | None:
        """The initial state as a tuple of (L*D, B, H) tensors (unbatched ones get their batch dimension)."""
        if state is None:
            return None
        LD, H = self.num_layers * self.num_directions, self.hidden_size
        want = (LD, B, H) if batched else (LD, H)
        form = "h_0" if self.num_states == 1 else "(h_0, c_0)"
        kind = "a Tensor" if self.num_states == 1 else "a tuple of 2 Tensors"
        if self.num_states == 1:  # a Tensor, as torch.nn.RNN/GRU (not a 1-tuple)
            packed = (state,) if isinstance(state, Tensor) else ()
        else:
            packed = tuple(state) if isinstance(state, (tuple, list)) else ()
        if len(packed) != self.num_states or not all(isinstance(s, Tensor) for s in packed):
            raise RecurrentInputError(
                f"Recurrent: state must be {form}, {kind} of shape {want}, got {type(state).__name__}."
            )
        if any(tuple(s.shape) != want for s in packed):
            got = [tuple(s.shape) for s in packed]
            which = "a batched 3-D" if batched else "an unbatched 2-D"
            raise RecurrentInputError(
                f"Recurrent: state must be {form}, each of shape {want}, got {got} (the state of {which} input is "
                f"{len(want)}-D: (layers * directions{', batch' if batched else ''}, hidden_size))."
            )
        for s in packed:
            if s.dtype != x.dtype:
                raise RecurrentInputError(
                    f"Recurrent: the initial state's dtype {s.dtype} does not match the input's dtype {x.dtype}; "
                    f"convert the state (h_0{_convert(x.dtype)}) or the input and module."
                )
            if s.device != x.device:
                raise RecurrentInputError(
                    f"Recurrent: the initial state is on {s.device} but the input on {x.device}; move it "
                    f"(h_0.to({str(x.device)!r}))."
                )
        return packed if batched else tuple(s.unsqueeze(1) for s in packed)

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
        with warnings.catch_warnings():  # torch.nn already warned about a dropout that does nothing
            warnings.simplefilter("ignore", UserWarning)
            new = cls(kind, module.input_size, module.hidden_size, module.num_layers, module.dropout,
                      bool(module.bidirectional), module.batch_first, bias=module.bias, **cell_kwargs)
        new = new.to(device=ref.device, dtype=ref.dtype)
        with torch.no_grad():
            for name, p in new._torch_names():
                p.copy_(getattr(module, name))
        return new

    def to_torch(self) -> nn.RNN | nn.LSTM | nn.GRU:
        """The equivalent torch.nn.RNN/LSTM/GRU with a copy of these weights."""
        if not isinstance(self.cell, str) or self.cell not in _TORCH_CLASSES:
            raise ValueError(f"Recurrent.to_torch: cell={self.cell!r} has no torch.nn counterpart; only {sorted(_TORCH_CLASSES)} do.")
        kwargs = {"nonlinearity": self.cells[0].nonlinearity} if self.cell == "rnn" else {}
        ref = self.cells[0].weight_ih
        with warnings.catch_warnings():  # this layer already warned about a dropout that does nothing
            warnings.simplefilter("ignore", UserWarning)
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
