"""Synthetic sequence-to-sequence tasks with known answers, generated from a seed.

Each generator returns `n` distinct (source, target) string pairs; the same seed gives the same
pairs on every machine (Python's `random.Random`, no global state). Tokens are characters, so the
task is the mapping itself, not a vocabulary:

- reverse:  "a7k2" -> "2k7a"                        (lengths min_len..max_len, symbols a-z0-9)
- sort:     "d3a9" -> "39ad"                        (the symbols in code-point order)
- addition: "123+45" -> "168"                       (operands of 1..max_digits digits)
- dates:    "tuesday 3 march 2015" -> "2015-03-03"  (a few spoken forms of a date, years 1950..2049)

`split_pairs` draws train / val / test from one pool of distinct pairs, so no test pair is ever
seen in training.
"""

from __future__ import annotations

import calendar
import datetime as dt
import random
import string

SYMBOLS = string.ascii_lowercase + string.digits
TASKS = ("reverse", "sort", "addition", "dates")
DEFAULT_LENGTHS = {"reverse": (1, 20), "sort": (1, 10), "addition": (1, 5), "dates": (0, 0)}


def _sequence(rng: random.Random, min_len: int, max_len: int) -> str:
    return "".join(rng.choice(SYMBOLS) for _ in range(rng.randint(min_len, max_len)))


def _addition(rng: random.Random, min_len: int, max_len: int) -> tuple[str, str]:
    a, b = (rng.randint(0, 10 ** rng.randint(min_len, max_len) - 1) for _ in range(2))
    return f"{a}+{b}", str(a + b)


_ORDINAL = {1: "st", 2: "nd", 3: "rd"}


def _date(rng: random.Random, min_len: int, max_len: int) -> tuple[str, str]:
    day = dt.date(1950, 1, 1) + dt.timedelta(days=rng.randrange(100 * 365))
    weekday, month = calendar.day_name[day.weekday()].lower(), calendar.month_name[day.month].lower()
    nth = f"{day.day}{'th' if 10 <= day.day % 100 <= 20 else _ORDINAL.get(day.day % 10, 'th')}"
    forms = [
        f"{weekday} {day.day} {month} {day.year}",
        f"{day.day} {month} {day.year}",
        f"{month} {day.day}, {day.year}",
        f"{month} {nth} {day.year}",
        f"{weekday}, {month} {nth}, {day.year}",
        f"{day.day}/{day.month}/{day.year}",
        f"{day.day:02d}.{day.month:02d}.{str(day.year)[2:]}",
        f"{month[:3]} {day.day} {day.year}",
    ]
    return rng.choice(forms), day.isoformat()


def generate(task: str, n: int, seed: int, min_len: int | None = None, max_len: int | None = None) -> list[tuple[str, str]]:
    """`n` distinct (source, target) pairs of `task` (see the module docstring), deterministic in
    `seed`. min_len / max_len: symbols (reverse, sort) or digits per operand (addition); None: the
    task's default (reverse 1..20, sort 1..10, addition 1..5; dates ignore them)."""
    if task not in TASKS:
        raise ValueError(f"unknown synthetic task {task!r}; one of {TASKS}")
    lo, hi = DEFAULT_LENGTHS[task]
    lo, hi = lo if min_len is None else min_len, hi if max_len is None else max_len
    rng = random.Random(f"{task}:{seed}")
    pairs: dict[str, str] = {}
    attempts = 0
    while len(pairs) < n:
        attempts += 1
        if attempts > 20 * n + 1000:
            raise ValueError(f"{task} with lengths {lo}..{hi} has fewer than {n} distinct pairs; raise max_len or lower the sizes")
        if task == "addition":
            src, tgt = _addition(rng, lo, hi)
        elif task == "dates":
            src, tgt = _date(rng, lo, hi)
        else:
            src = _sequence(rng, lo, hi)
            tgt = src[::-1] if task == "reverse" else "".join(sorted(src))
        pairs.setdefault(src, tgt)
    return list(pairs.items())


def split_pairs(task: str, sizes: tuple[int, int, int], seed: int, min_len: int | None = None,
                max_len: int | None = None) -> tuple[list[tuple[str, str]], ...]:
    """(train, val, test) of the given sizes, disjoint (by source), from one pool of distinct pairs."""
    pool = generate(task, sum(sizes), seed, min_len, max_len)
    a, b = sizes[0], sizes[0] + sizes[1]
    return pool[:a], pool[a:b], pool[b:]
