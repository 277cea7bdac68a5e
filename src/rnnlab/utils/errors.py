"""The one error type for mistakes a user fixes in a config or a file, and warnings we expect.

Imports nothing but the standard library: the data and task code raise `UserError` and must stay
usable without Hydra (the entry layer, `rnnlab.entry`, turns it into exit status 2).
"""

import warnings


class UserError(ValueError):
    """A bad input (file, config value, option) explained in one paragraph with its fix.

    The entry points (`train.py`, `eval.py`, `predict.py`, `sample.py`) print the message without a
    traceback and exit with status 2 (`rnnlab.entry.run`); library callers catch it like any ValueError.
    """


def quiet_known_warnings() -> None:
    """Silence warnings that are expected here and would only bury the useful log lines."""
    # The data is in-memory tensors: worker processes would only add start-up time, and the
    # TBPTT windows must arrive in order.
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    # Lightning 2.6 calls a pytree API that torch deprecates; nothing for us to change.
    warnings.filterwarnings("ignore", r".*isinstance\(treespec, LeafSpec\).*")
