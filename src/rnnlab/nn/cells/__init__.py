"""One file per cell; a registry of cells by name.

A new cell is a `RecurrentCell` subclass with its parameters and `step`, registered by name:

    @register_cell("my_cell")
    class MyCell(RecurrentCell): ...

after which `Recurrent("my_cell", ...)`, `make_cell("my_cell", ...)` and `model.cell=my_cell` in a
config all build it. Every module in this folder is imported with the package, so a new file here
registers itself: nothing else to edit. A hand-written kernel (`fused_sequence`) is optional: without
one the cell runs autograd's unrolled loop of `step`.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable

from rnnlab.nn.cells.base import RecurrentCell

CELLS: dict[str, type[RecurrentCell]] = {}


def register_cell(name: str) -> Callable[[type[RecurrentCell]], type[RecurrentCell]]:
    """Class decorator: make a RecurrentCell subclass buildable by `name`."""
    if not isinstance(name, str) or not name.isidentifier():
        # the name is also a config value (model.cell=<name>) and a file name (configs/model/<name>.yaml)
        raise ValueError(f"register_cell({name!r}): the name must be a string of letters, digits and _, e.g. 'my_cell'.")

    def add(cls: type[RecurrentCell]) -> type[RecurrentCell]:
        if not (isinstance(cls, type) and issubclass(cls, RecurrentCell)):
            raise TypeError(f"register_cell({name!r}): {cls!r} is not a RecurrentCell subclass; subclass rnnlab.nn.RecurrentCell.")
        if cls.step is RecurrentCell.step:
            raise TypeError(f"register_cell({name!r}): {cls.__qualname__} does not define `step`, the equations of one time step.")
        if CELLS.get(name, cls) is not cls:  # the same class twice (a module imported again) is harmless
            raise ValueError(
                f"register_cell({name!r}): the name is taken by {CELLS[name].__module__}.{CELLS[name].__qualname__}; "
                f"pick another name (or `del CELLS[{name!r}]` first to replace it on purpose)."
            )
        CELLS[name] = cls
        return cls

    return add


def make_cell(cell: str | type[RecurrentCell], input_size: int, hidden_size: int, **kwargs) -> RecurrentCell:
    """Build a cell by registered name (or from its class). Extra kwargs go to that cell's constructor."""
    if isinstance(cell, type) and issubclass(cell, RecurrentCell):
        return cell(input_size, hidden_size, **kwargs)
    if not isinstance(cell, str) or cell not in CELLS:
        raise ValueError(f"cell={cell!r} is not a known cell; choose one of {sorted(CELLS)} or register yours with register_cell.")
    return CELLS[cell](input_size, hidden_size, **kwargs)


# Each cell file registers itself on import: import them all, so a new file needs no line here.
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

from rnnlab.nn.cells.gru import GRUCell  # noqa: E402
from rnnlab.nn.cells.lstm import LSTMCell  # noqa: E402
from rnnlab.nn.cells.layernorm_lstm import LayerNormLSTMCell  # noqa: E402
from rnnlab.nn.cells.rnn import RNNCell  # noqa: E402

__all__ = ["CELLS", "GRUCell", "LSTMCell", "LayerNormLSTMCell", "RNNCell", "RecurrentCell", "make_cell", "register_cell"]
