"""Pretrained word vectors from a word2vec / GloVe text file, for the words of a vocabulary.

The format: one word a line followed by its numbers, separated by spaces ("the 0.418 0.24968 ...");
word2vec's text files start with a "<count> <dim>" header line, which is skipped; `.gz` files are
read compressed. Only the vocabulary's words are parsed, so a file of millions of lines costs one
pass of splitting. A word is matched as it is, else lower-cased (GloVe's 840B file is cased, the
vocabulary usually is not); the words not found keep their random initialisation.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import torch
from torch import Tensor

from rnnlab.utils.errors import UserError

OPTION = "task.embeddings.path"


def _lines(path: Path):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                yield number, raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise UserError(f"{OPTION}={path}: line {number} is not UTF-8 text ({e.reason} at byte {e.start}); "
                                "word vectors must be a UTF-8 text file (word2vec/GloVe text format).") from e


def load_vectors(path: str | Path, words: list[str], dim: int) -> tuple[Tensor, Tensor]:
    """(vectors (len(words), dim) float32, found (len(words),) bool): row i is words[i]'s vector
    where found[i], else zero. Raises UserError naming the file and line for anything malformed."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"{OPTION}={path}: no such file. Give a word2vec/GloVe text file (word, then its numbers, "
                        "one word a line), or leave it null to train the embeddings from scratch.")
    index: dict[str, int] = {w: i for i, w in enumerate(words)}
    lowered: dict[str, int] = {}
    for i, w in enumerate(words):
        lowered.setdefault(w.lower(), i)
    vectors, found, exact = torch.zeros(len(words), dim), torch.zeros(len(words), dtype=torch.bool), set()
    seen_any = False
    for number, line in _lines(path):
        if not line.strip():
            continue
        fields = line.rsplit(" ", dim)  # the word may hold spaces; its numbers never do
        if number == 1 and len(line.split()) == 2 and all(f.isdigit() for f in line.split()):
            continue  # word2vec's "<count> <dim>" header
        if len(fields) != dim + 1 or not fields[0]:
            got = len(line.split()) - 1
            raise UserError(f"{OPTION}={path}, line {number}: expected a word and {dim} numbers, got {got} numbers. "
                            f"The file's vectors must have task.module.embedding_dim={dim} values (set embedding_dim "
                            "to the file's size), one word a line.")
        seen_any = True
        word = fields[0]
        i = index.get(word)
        if i is None or i in exact:  # not the vocabulary's spelling (or already set by it): try lower case
            i = lowered.get(word.lower())
            if i is None or i in exact or found[i]:
                continue
        else:
            exact.add(i)
        try:
            vectors[i] = torch.tensor([float(v) for v in fields[1:]])
        except ValueError as e:
            raise UserError(f"{OPTION}={path}, line {number}: {e}; a word's vector must be {dim} numbers.") from e
        found[i] = True
    if not seen_any:
        raise UserError(f"{OPTION}={path}: the file holds no word vectors.")
    return vectors, found
