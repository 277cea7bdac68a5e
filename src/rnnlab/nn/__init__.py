"""Cells, the one layer that turns any cell into a sequence model, and the torch.nn baseline."""

from rnnlab.nn.cells import CELLS, GRUCell, LSTMCell, RecurrentCell, RNNCell, make_cell
from rnnlab.nn.recurrent import Recurrent
from rnnlab.nn.torch_recurrent import TorchRecurrent

__all__ = [
    "CELLS",
    "GRUCell",
    "LSTMCell",
    "RNNCell",
    "Recurrent",
    "RecurrentCell",
    "TorchRecurrent",
    "make_cell",
]
