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


class TrainingDiverged(UserError):
    """The loss or its gradient became NaN or infinite; the message names the step, the last finite
    loss and the checkpoint left intact (the usual fix is a lower learning rate)."""


def quiet_known_warnings() -> None:
    """Silence warnings that are expected here and would only bury the useful log lines."""
    # The data is in-memory tensors: worker processes would only add start-up time, and the
    # TBPTT windows must arrive in order.
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    # Lightning 2.6 calls a pytree API that torch deprecates; nothing for us to change.
    warnings.filterwarnings("ignore", r".*isinstance\(treespec, LeafSpec\).*")
    # Under DDP the tasks add up their ranks' evaluation sums themselves (TaskModuleBase.sum_over_ranks)
    # before logging; Lightning cannot tell and suggests sync_dist, which would average them again.
    warnings.filterwarnings("ignore", r".*when logging on epoch level in distributed setting.*")
