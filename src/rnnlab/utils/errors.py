"""The one error type for mistakes a user fixes in a config or a file, and warnings we expect."""

import warnings
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate


class UserError(ValueError):
    """A bad input (file, config value, option) explained in one paragraph with its fix.

    Entry points (`train.py`, `eval.py`, `sample.py`) print the message without a traceback
    and exit with status 2; library callers catch it like any ValueError.
    """


def quiet_known_warnings() -> None:
    """Silence warnings that are expected here and would only bury the useful log lines."""
    # The data is in-memory tensors: worker processes would only add start-up time, and the
    # TBPTT windows must arrive in order.
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    # Lightning 2.6 calls a pytree API that torch deprecates; nothing for us to change.
    warnings.filterwarnings("ignore", r".*isinstance\(treespec, LeafSpec\).*")


def build(config: Any, **kwargs: Any) -> Any:
    """`hydra.utils.instantiate`, except that a UserError raised by the object's constructor comes
    out as itself (Hydra wraps it in an InstantiationException, which would bury the message)."""
    try:
        return instantiate(config, **kwargs)
    except InstantiationException as e:
        if isinstance(e.__cause__, UserError):
            raise e.__cause__ from None
        raise
