"""The one error type for mistakes a user fixes in a config or a file, not in the code."""


class UserError(ValueError):
    """A bad input (file, config value, option) explained in one paragraph with its fix.

    Entry points (`train.py`, `eval.py`, `sample.py`) print the message without a traceback
    and exit with status 2; library callers catch it like any ValueError.
    """
