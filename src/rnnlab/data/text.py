"""Tokens and their ids: the tokenisers and the vocabulary the text tasks share.

Both are plain values (a tokeniser name, a lower-case flag, a list of tokens), stored in a task's
checkpoint, so `predict.py` reads raw text exactly as the model was trained to.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

from rnnlab.utils.errors import UserError

PAD, UNK = "<pad>", "<unk>"  # ids 0 and 1 in every vocabulary
PAD_ID, UNK_ID = 0, 1

# `words`: words, numbers and hyphenated compounds; English clitics split off as the Penn Treebank
# does ("don't" -> do n't, "film's" -> film 's), so raw text meets SST-2's pre-tokenised form
# ("do n't", "film 's"); every other punctuation character is a token of its own ("funny," ->
# funny ,), since "!" or "?" carry sentiment.
_WORDS = re.compile(r"\w+(?=n't\b)|n't\b|'\w+|\w+(?:-\w+)*|[^\w\s]")
TOKENIZERS = ("words", "whitespace", "chars")
# The Penn Treebank's escapes, as text: SST-2's dev and test splits write "-lrb- writer\/director
# -rrb-" where its training split writes "( writer/director )"; `words` reads both the same way.
_PTB_ESCAPES = re.compile(r"-[lr][rsc]b-|\\[/*]", re.IGNORECASE)
_PTB_TEXT = {"-lrb-": "(", "-rrb-": ")", "-lsb-": "[", "-rsb-": "]", "-lcb-": "{", "-rcb-": "}", "\\/": "/", "\\*": "*"}


def check_tokenizer(tokenizer: object, lowercase: object, where: str = "task.data") -> None:
    """UserError unless `tokenizer` is one of TOKENIZERS and `lowercase` a bool."""
    if tokenizer not in TOKENIZERS:
        raise UserError(f"{where}.tokenizer={tokenizer!r}: choose one of {TOKENIZERS} (words: punctuation split off; "
                        "whitespace: split on spaces only; chars: every character, spaces included).")
    if not isinstance(lowercase, bool):
        raise UserError(f"{where}.lowercase={lowercase!r}: must be true or false.")


def tokenize(text: str, tokenizer: str = "words", lowercase: bool = True) -> list[str]:
    """`text` as a list of tokens ([] for a line of blanks).

    Args:
        tokenizer: 'words' (punctuation and clitics split off, see `_WORDS`; Penn Treebank escapes
            such as -lrb- read as the characters they stand for), 'whitespace', or
            'chars' (every character; [] for an empty string).
        lowercase: fold case first ("Great" and "great" are one word).
    """
    if lowercase:
        text = text.lower()
    if tokenizer == "chars":
        return list(text)
    if tokenizer == "words":
        return _WORDS.findall(_PTB_ESCAPES.sub(lambda m: _PTB_TEXT[m.group().lower()], text))
    return text.split()


class Vocab:
    """Tokens <-> ids. `words[i]` is the token with id i; `<pad>` is 0 and `<unk>` is 1.

    Args:
        words: the vocabulary in id order, starting with PAD, UNK (plain strings: it lives in checkpoints).
    """

    def __init__(self, words: Sequence[str]) -> None:
        words = list(words)
        if words[:2] != [PAD, UNK] or len(set(words)) != len(words) or not all(isinstance(w, str) for w in words):
            raise ValueError(f"Vocab: words must be distinct strings starting with {PAD!r}, {UNK!r}.")
        self.words = words
        self.stoi = {w: i for i, w in enumerate(words)}

    @classmethod
    def build(cls, sentences: Iterable[Sequence[str]], min_freq: int = 1, max_size: int | None = None) -> Vocab:
        """The tokens of `sentences` (the training split) seen at least `min_freq` times, most
        frequent first (ties alphabetically, so the ids do not depend on the order of the data),
        at most `max_size` of them besides PAD and UNK."""
        counts = Counter(token for tokens in sentences for token in tokens)
        kept = sorted((w for w, c in counts.items() if c >= min_freq and w not in (PAD, UNK)), key=lambda w: (-counts[w], w))
        return cls([PAD, UNK, *kept[:max_size]])

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, tokens: Sequence[str]) -> list[int]:
        """Token ids; tokens outside the vocabulary become UNK_ID."""
        return [self.stoi.get(t, UNK_ID) for t in tokens]

    def decode(self, ids: Tensor | Sequence[int]) -> list[str]:
        if isinstance(ids, Tensor):
            ids = ids.tolist()
        return [self.words[i] for i in ids]


def pad_batch(sequences: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor]:
    """Id lists as one padded batch: x (batch, max length) int64 with PAD_ID after each end, and
    lengths (batch,) int64. Every sequence must hold at least one id."""
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
    x = torch.full((len(sequences), int(lengths.max())), PAD_ID, dtype=torch.long)
    for row, ids in enumerate(sequences):
        x[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return x, lengths
