"""Cells, the one layer that turns any cell into a sequence model, and the torch.nn baseline."""

from rnnlab.nn.cells import CELLS, GRUCell, LayerNormLSTMCell, LSTMCell, RecurrentCell, RNNCell, make_cell, register_cell
from rnnlab.nn.recurrent import Recurrent, RecurrentInputError
from rnnlab.nn.torch_recurrent import TorchRecurrent

__all__ = [
    "CELLS",
    "GRUCell",
    "LSTMCell",
    "LayerNormLSTMCell",
    "RNNCell",
    "Recurrent",
    "RecurrentCell",
    "RecurrentInputError",
    "TorchRecurrent",
    "make_cell",
    "register_cell",
]
