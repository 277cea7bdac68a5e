"""Small helpers shared by the entry points: errors, callbacks, schedules, run bookkeeping."""

from rnnlab.utils.errors import UserError

__all__ = ["UserError"]
