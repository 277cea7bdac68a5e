"""One file per cell family; `make_cell` builds one by name."""

from rnnlab.nn.cells.base import RecurrentCell
from rnnlab.nn.cells.gru import GRUCell
from rnnlab.nn.cells.lstm import LSTMCell
from rnnlab.nn.cells.rnn import RNNCell

CELLS: dict[str, type[RecurrentCell]] = {"rnn": RNNCell, "lstm": LSTMCell, "gru": GRUCell}


def make_cell(cell: str, input_size: int, hidden_size: int, **kwargs) -> RecurrentCell:
    """Build a cell by name: 'rnn', 'lstm' or 'gru'. Extra kwargs go to that cell's constructor."""
    if cell not in CELLS:
        raise ValueError(f"cell={cell!r} is not a known cell; choose one of {sorted(CELLS)}.")
    return CELLS[cell](input_size, hidden_size, **kwargs)


__all__ = ["CELLS", "GRUCell", "LSTMCell", "RNNCell", "RecurrentCell", "make_cell"]
