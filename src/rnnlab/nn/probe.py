"""Gradients through time: ‖∂L/∂h_t‖ for every step t of a recurrent layer, where L is a loss of the
last step only, as in the vanishing-gradient argument (Bengio et al. 1994; Pascanu et al. 2013):

    ∂L/∂h_t = (∂h_{t+1}/∂h_t)ᵀ ⋯ (∂h_T/∂h_{T-1})ᵀ ∂L/∂h_T,

a product of T - t Jacobians of the recurrence (for the Elman RNN, diag(1 - h_s²) W each). The
output h_t of a step is not a leaf of the graph, so its total derivative is read through a zero
tensor δ_t added to it inside the loop: ∂L/∂δ_t = ∂L/∂h_t, paths through all later steps included.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from rnnlab.nn.recurrent import Recurrent


def _one_direction(layer: Recurrent, why: str) -> None:
    if not isinstance(layer, Recurrent) or layer.bidirectional:
        raise ValueError(f"{why} needs a one-direction rnnlab Recurrent layer.")


@torch.no_grad()
def layer_states(layer: Recurrent, x: Tensor) -> list[tuple[Tensor, ...]]:
    """Every state of every layer of a one-direction rnnlab `layer` at every step, from a zero state:
    [for each layer: (h, c, ...) each (time, batch, H)] (an LSTM's are h and c, the others' h only).
    x: (batch, time, features) if batch_first, else (time, batch, features). Evaluation: no dropout."""
    _one_direction(layer, "layer_states")
    inp = x.transpose(0, 1) if layer.batch_first else x
    out = []
    for cell in layer.cells:
        states = cell.run(inp, cell.init_state(inp.size(1), inp))
        out.append(tuple(states))
        inp = states[0]
    return out


def unroll_with_handles(layer: Recurrent, x: Tensor) -> tuple[list[Tensor], list[Tensor]]:
    """Run a one-direction rnnlab `layer` on x: (batch, time, features) (batch_first) or (time,
    batch, features), from a zero state, with a zero handle δ_t added to the top layer's h_t at each
    step. Returns (h_t for t = 1..T, each (batch, H); δ_t, each (batch, H), requiring grad). Lower
    layers run as in the layer; dropout between layers is not applied (evaluation)."""
    _one_direction(layer, "unroll_with_handles (the gradient runs back along one time axis)")
    inp = x.transpose(0, 1) if layer.batch_first else x  # (T, B, F)
    for cell in layer.cells[:-1]:
        inp = cell.run(inp, cell.init_state(inp.size(1), inp))[0]
    top = layer.cells[-1]
    state = top.init_state(inp.size(1), inp)
    hs, handles = [], []
    for xw_t in top.project_input(inp).unbind(0):
        _, state = top.step(xw_t, state)
        delta = torch.zeros_like(state[0], requires_grad=True)
        state = (state[0] + delta, *state[1:])
        hs.append(state[0])
        handles.append(delta)
    return hs, handles


def hidden_grad_norms(layer: Recurrent, x: Tensor, last_loss: Callable[[Tensor], Tensor]) -> Tensor:
    """‖∂L/∂h_t‖ for t = 1..T: (T,), where L = last_loss(h_T) and h_T: (batch, H) is the top layer's
    last output; the norm is over the batch and the units together."""
    with torch.enable_grad():
        hs, handles = unroll_with_handles(layer, x)
        grads = torch.autograd.grad(last_loss(hs[-1]), handles)
    return torch.stack([g.norm() for g in grads])


def largest_singular_values(layer: Recurrent) -> dict[str, float]:
    """σ_max of each cell's recurrent weight W (weight_hh: (gates·H, H)), by cell: l0, l1, l0_reverse...
    Cells without one (minGRU, minLSTM) are left out."""
    out = {}
    for i, cell in enumerate(layer.cells):
        w = getattr(cell, "weight_hh", None)
        if w is not None:
            name = f"l{i // layer.num_directions}" + ("_reverse" if i % layer.num_directions else "")
            out[name] = float(torch.linalg.matrix_norm(w.detach().float(), ord=2))
    return out
