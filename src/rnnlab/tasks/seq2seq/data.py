"""Pairs of sequences for the seq2seq task: synthetic tasks, Multi30k, or a user's own files.

Sources (`name`):
- reverse | sort | addition | dates: generated from `data_seed` (rnnlab.tasks.seq2seq.synthetic),
  `sizes` train / val / test pairs, lengths from `min_len` / `max_len`;
- multi30k: German -> English captions, `multi30k/{train,val,test_2016_flickr}.{de,en}.gz` in the
  data directory (downloaded and checked by SHA-256 when missing), `direction` de-en or en-de;
- pairs: `path` a TSV of "source<TAB>target" lines (or {train, val, test} of them), or `files`
  {source: a.txt, target: b.txt}, two line-aligned files; a source without splits is cut by
  `split` fractions with `split_seed`.

Tokens: `chars` (every character, the synthetic default), `words` (lower-case words, punctuation
split off) with a `min_freq` vocabulary of the training split, or `bpe`: byte-pair subwords trained on
the training split (Hugging Face `tokenizers`, `bpe_vocab_size`, one vocabulary shared by both
sides), detokenised exactly. Target ids: <pad> 0, <unk> 1, <bos> 2, <eos> 3. What the model needs to
read and write text again (tokeniser, vocabularies, the trained BPE) is plain values, stored in
the checkpoint.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from rnnlab.data.batches import ResumableTraining
from rnnlab.data.download import MULTI30K, fetch
from rnnlab.data.files import read_lines
from rnnlab.data.text import PAD, PAD_ID, UNK, Vocab, tokenize
from rnnlab.tasks.seq2seq.synthetic import TASKS as SYNTHETIC
from rnnlab.tasks.seq2seq.synthetic import split_pairs
from rnnlab.utils.errors import UserError

BOS, EOS = "<bos>", "<eos>"
BOS_ID, EOS_ID = 2, 3
SPECIALS = [PAD, UNK, BOS, EOS]
TOKENIZERS = ("chars", "words", "bpe")
SOURCES = (*SYNTHETIC, "multi30k", "pairs")
SPLITS = ("train", "val", "test")
log = logging.getLogger(__name__)


# ---------------------------------------------------------------- text <-> ids, both ways


class Codec:
    """Text <-> ids for one side (source or target), from plain values.

    Args:
        tokenizer: 'chars' | 'words' | 'bpe'.
        lowercase: fold case first.
        words: the vocabulary in id order (SPECIALS first).
        bpe: the trained BPE tokenizer as its JSON string (tokenizer='bpe').
        reverse: the ids run last token first (`encode` reverses them, `decode` turns them back).
    """

    def __init__(self, tokenizer: str, lowercase: bool, words: Sequence[str], bpe: str | None = None, reverse: bool = False) -> None:
        self.tokenizer, self.lowercase, self.reverse = tokenizer, lowercase, reverse
        self.vocab = Vocab(words)
        self._bpe = None
        if tokenizer == "bpe":
            from tokenizers import Tokenizer

            self._bpe = Tokenizer.from_str(bpe)

    def tokens(self, text: str) -> list[str]:
        text = text.lower() if self.lowercase else text
        if self._bpe is not None:
            return self._bpe.encode(text, add_special_tokens=False).tokens
        return tokenize(text, self.tokenizer if self.tokenizer != "bpe" else "words", lowercase=False)

    def encode(self, text: str) -> list[int]:
        ids = self.vocab.encode(self.tokens(text))
        return ids[::-1] if self.reverse else ids

    def decode(self, ids: Sequence[int]) -> str:
        """Detokenised text: chars joined, BPE decoded exactly, words joined with spaces except
        before closing punctuation and clitics ("a dog , running 's" -> "a dog, running's")."""
        ids = [i for i in ids if i >= len(SPECIALS) or i == 1]  # no pad / bos / eos
        if self.reverse:
            ids = ids[::-1]
        if self._bpe is not None:
            return self._bpe.decode(ids, skip_special_tokens=False).strip()
        tokens = self.vocab.decode(ids)
        if self.tokenizer == "chars":
            return "".join(tokens)
        return re.sub(r" (?=[.,!?;:%)\]}]|'\w|n't\b)|(?<=[(\[{]) ", "", " ".join(tokens))


def codecs_from(c: Mapping[str, Any]) -> tuple[Codec, Codec]:
    """The source and target codecs that `Seq2SeqDataModule.codecs()`'s plain values describe."""
    return (Codec(c["tokenizer"], c["lowercase"], c["source_words"], c.get("bpe")),
            Codec(c["tokenizer"], c["lowercase"], c["target_words"], c.get("bpe"), c.get("reverse_target", False)))


def train_bpe(texts: Sequence[str], vocab_size: int) -> str:
    """A byte-pair tokenizer trained on `texts` (Metaspace pre-tokenisation, so decoding restores the
    spacing), SPECIALS as ids 0..3; its JSON string."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False))
    return tok.to_str()


def bpe_words(bpe: str) -> list[str]:
    from tokenizers import Tokenizer

    vocab = Tokenizer.from_str(bpe).get_vocab()
    return sorted(vocab, key=vocab.get)


def build_words(sentences: Sequence[Sequence[str]], min_freq: int, max_size: int | None) -> list[str]:
    """SPECIALS, then the training tokens seen min_freq times, most frequent first."""
    kept = [w for w in Vocab.build(sentences, min_freq, max_size).words[2:] if w not in SPECIALS]
    return SPECIALS + kept


# ---------------------------------------------------------------- reading the sources


@dataclass(frozen=True)
class Pair:
    source: str
    target: str
    where: str  # file and line, for error messages ("" for generated pairs)


def read_pairs_tsv(path: str, field: str) -> list[Pair]:
    out = []
    for number, line in enumerate(read_lines(path, field), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2:
            raise UserError(f"{path}, line {number}: expected 'source<TAB>target', found {len(parts)} tab-separated fields. "
                            "One pair a line, the two sides separated by a single tab.")
        out.append(Pair(parts[0], parts[1], f"{path}, line {number}"))
    return out


def read_aligned(source: str, target: str, field: str) -> list[Pair]:
    src, tgt = read_lines(source, f"{field}.source"), read_lines(target, f"{field}.target")
    if len(src) != len(tgt):
        raise UserError(f"{field}: {source} has {len(src)} lines but {target} has {len(tgt)}; the two files must be "
                        "line-aligned (line i of one translates line i of the other).")
    return [Pair(s, t, f"{source} / {target}, line {i}") for i, (s, t) in enumerate(zip(src, tgt), 1)]


def cut(pairs: list[Pair], fractions: Sequence[float], seed: int) -> dict[str, list[Pair]]:
    """train / val / test by fractions, after a shuffle by `seed`."""
    if len(fractions) != 3 or any(not isinstance(f, (int, float)) or f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise UserError(f"task.data.split={list(fractions)}: give three non-negative fractions summing to 1, e.g. [0.8, 0.1, 0.1].")
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    a = round(fractions[0] * len(pairs))
    b = a + round(fractions[1] * len(pairs))
    return {"train": [pairs[i] for i in order[:a]], "val": [pairs[i] for i in order[a:b]], "test": [pairs[i] for i in order[b:]]}


# ---------------------------------------------------------------- batches


class Batch(NamedTuple):
    """src_len (B,) and src (B, S) ids; tgt_in (B, T) = <bos> + target, tgt_out (B, T) = target +
    <eos> (PAD_ID after each end); index (B,): each pair's row in its split. (src_len first: the
    throughput callback counts batch[0], so it reports pairs per second.)"""

    src_len: Tensor
    src: Tensor
    tgt_in: Tensor
    tgt_out: Tensor
    index: Tensor


class PairsDataset(Dataset):
    def __init__(self, src: list[list[int]], tgt: list[list[int]], texts: list[Pair]) -> None:
        self.src, self.tgt, self.texts = src, tgt, texts
        self.lengths = [len(s) for s in src]

    def __len__(self) -> int:
        return len(self.src)

    def __getitem__(self, indices: list[int]) -> Batch:
        src = [self.src[i] for i in indices]
        tgt = [self.tgt[i] for i in indices]
        S, T = max(map(len, src)), max(map(len, tgt)) + 1
        x = torch.full((len(src), S), PAD_ID, dtype=torch.long)
        tin = torch.full((len(src), T), PAD_ID, dtype=torch.long)
        tout = torch.full((len(src), T), PAD_ID, dtype=torch.long)
        for r, (s, t) in enumerate(zip(src, tgt)):
            x[r, : len(s)] = torch.tensor(s)
            tin[r, : len(t) + 1] = torch.tensor([BOS_ID, *t])
            tout[r, : len(t) + 1] = torch.tensor([*t, EOS_ID])
        return Batch(torch.tensor([len(s) for s in src]), x, tin, tout, torch.tensor(indices))


# ---------------------------------------------------------------- the data module


class Seq2SeqDataModule(ResumableTraining, L.LightningDataModule):
    """Source -> target pairs as bucketed batches (see the module docstring for the sources).

    Args:
        name: one of SOURCES.
        sizes: [train, val, test] pairs of a synthetic task.
        min_len, max_len: a synthetic task's lengths (None: its default).
        data_seed: the synthetic pairs' seed (the same data for every training seed).
        direction: multi30k's 'de-en' or 'en-de'.
        path / files: name='pairs': a TSV (or {train, val, test}) / {source, target} aligned files.
        split, split_seed: fractions for a pairs source without splits.
        data_dir: where Multi30k is cached (None: $RNNLAB_DATA_DIR, else ./data).
        tokenizer, lowercase, min_freq, max_size, bpe_vocab_size: how text becomes ids.
        max_source_len, max_target_len, too_long: longer pairs (any split) are truncated with a
            warning, skipped with a warning, or refused ('truncate' | 'skip' | 'error'); None: no limit.
        batch_size, eval_batch_size, bucket_batches: batching.
        reverse_target: the decoder writes each target last token first; outputs are turned back
            before they are scored or shown (addition: the sum's lowest digit, and its carry, first).
        codecs: from a checkpoint (`Seq2SeqModule.datamodule_kwargs`): read text as it was trained.
    """

    def __init__(self, name: str = "reverse", sizes: Sequence[int] = (20000, 1000, 1000), min_len: int | None = None,
                 max_len: int | None = None, data_seed: int = 0, direction: str = "de-en", path: Any = None,
                 files: Mapping[str, str] | None = None, split: Sequence[float] = (0.8, 0.1, 0.1), split_seed: int = 0,
                 data_dir: str | None = None, tokenizer: str | None = None, lowercase: bool | None = None, min_freq: int = 1,
                 max_size: int | None = None, bpe_vocab_size: int = 8000, max_source_len: int | None = None,
                 max_target_len: int | None = None, too_long: str = "truncate", batch_size: int = 64, eval_batch_size: int | None = None,
                 bucket_batches: int = 50, reverse_target: bool = False, codecs: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        if name not in SOURCES:
            raise UserError(f"task.data.name={name!r}: choose one of {SOURCES} (synthetic tasks, multi30k, or pairs: your own files).")
        synthetic = name in SYNTHETIC
        tokenizer = tokenizer or ("chars" if synthetic else "words")
        if tokenizer not in TOKENIZERS:
            raise UserError(f"task.data.tokenizer={tokenizer!r}: choose one of {TOKENIZERS}.")
        lowercase = (not synthetic) if lowercase is None else lowercase
        if name == "multi30k" and direction not in ("de-en", "en-de"):
            raise UserError(f"task.data.direction={direction!r}: multi30k translates de-en or en-de.")
        for key, value in (("batch_size", batch_size), ("min_freq", min_freq), ("bucket_batches", bucket_batches), ("bpe_vocab_size", bpe_vocab_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserError(f"task.data.{key}={value!r}: must be a positive integer.")
        if not isinstance(reverse_target, bool):
            raise UserError(f"task.data.reverse_target={reverse_target!r}: must be true or false.")
        if too_long not in ("truncate", "skip", "error"):
            raise UserError(f"task.data.too_long={too_long!r}: choose truncate (cut to the limit, with a warning), skip or error.")
        for key, value in (("max_source_len", max_source_len), ("max_target_len", max_target_len)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise UserError(f"task.data.{key}={value!r}: must be a positive integer, or null (no limit).")
        if name == "pairs" and (path is None) == (files is None):
            raise UserError("task.data.name=pairs: give either task.data.path (a TSV of source<TAB>target lines, or "
                            "{train: a.tsv, val: b.tsv, test: c.tsv}) or task.data.files={source: a.txt, target: b.txt}.")
        self.name, self.sizes, self.min_len, self.max_len, self.data_seed = name, list(sizes), min_len, max_len, data_seed
        self.direction, self.path, self.files, self.split, self.split_seed = direction, path, files, list(split), split_seed
        self.data_dir, self.tokenizer, self.lowercase = data_dir, tokenizer, lowercase
        self.min_freq, self.max_size, self.bpe_vocab_size = min_freq, max_size, bpe_vocab_size
        self.max_source_len, self.max_target_len, self.too_long = max_source_len, max_target_len, too_long
        self.batch_size, self.eval_batch_size, self.bucket_batches = batch_size, eval_batch_size or 4 * batch_size, bucket_batches
        self.reverse_target = reverse_target
        self.codecs_given = dict(codecs) if codecs else None
        self.source: Codec | None = None
        self.target: Codec | None = None
        self.splits: dict[str, PairsDataset] = {}

    def _read(self) -> dict[str, list[Pair]]:
        if self.name in SYNTHETIC:
            if len(self.sizes) != 3 or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in self.sizes):
                raise UserError(f"task.data.sizes={self.sizes}: give [train, val, test] as three positive integers.")
            try:
                parts = split_pairs(self.name, tuple(self.sizes), self.data_seed, self.min_len, self.max_len)
            except ValueError as e:
                raise UserError(f"task.data.name={self.name}: {e} (task.data.sizes, task.data.min_len / max_len).") from e
            return {s: [Pair(a, b, "") for a, b in part] for s, part in zip(SPLITS, parts)}
        if self.name == "multi30k":
            src, tgt = self.direction.split("-")
            names = {"train": "train", "val": "val", "test": "test_2016_flickr"}
            return {s: read_aligned(str(fetch(MULTI30K[f"{n}.{src}"], self.data_dir)), str(fetch(MULTI30K[f"{n}.{tgt}"], self.data_dir)),
                                    f"multi30k {n}") for s, n in names.items()}
        if self.files is not None:
            if not isinstance(self.files, Mapping) or set(self.files) != {"source", "target"}:
                raise UserError(f"task.data.files={self.files!r}: give {{source: a.txt, target: b.txt}}, two line-aligned files.")
            return cut(read_aligned(self.files["source"], self.files["target"], "task.data.files"), self.split, self.split_seed)
        if isinstance(self.path, Mapping):
            if set(self.path) != set(SPLITS):
                raise UserError(f"task.data.path={dict(self.path)!r}: give all of {SPLITS}, or one file to be split.")
            return {s: read_pairs_tsv(str(self.path[s]), f"task.data.path.{s}") for s in SPLITS}
        return cut(read_pairs_tsv(str(self.path), "task.data.path"), self.split, self.split_seed)

    def _codecs(self, train: list[Pair]) -> tuple[Codec, Codec]:
        if self.codecs_given is not None:
            return codecs_from(self.codecs_given)
        fold = (lambda t: t.lower()) if self.lowercase else (lambda t: t)  # noqa: E731
        if self.tokenizer == "bpe":
            bpe = train_bpe([fold(p.source) for p in train] + [fold(p.target) for p in train], self.bpe_vocab_size)
            words = bpe_words(bpe)
            return Codec("bpe", self.lowercase, words, bpe), Codec("bpe", self.lowercase, words, bpe, self.reverse_target)
        side = lambda attr: build_words([tokenize(fold(getattr(p, attr)), self.tokenizer, False) for p in train], self.min_freq, self.max_size)  # noqa: E731
        return Codec(self.tokenizer, self.lowercase, side("source")), Codec(self.tokenizer, self.lowercase, side("target"), None, self.reverse_target)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        raw = self._read()
        for split, pairs in raw.items():
            if split == "train" and not pairs:
                raise UserError(f"task.data: the training split of {self.name} is empty; give more pairs (task.data.sizes / split).")
        self.source, self.target = self._codecs(raw["train"])
        for split, pairs in raw.items():
            src, tgt, kept, long = [], [], [], []
            for n, p in enumerate(pairs, 1):
                where = p.where or f"{self.name} {split} pair {n}"
                s, t = self.source.encode(p.source), self.target.encode(p.target)
                if not s or not t:
                    raise UserError(f"{where}: the {'source' if not s else 'target'} is empty (no tokens); every pair needs "
                                    "both sides. Remove the line or fill it in.")
                over = [(side, len(ids), limit) for side, ids, limit in (("source", s, self.max_source_len), ("target", t, self.max_target_len))
                        if limit is not None and len(ids) > limit]
                if over:
                    side, length, limit = over[0]
                    if self.too_long == "error":
                        raise UserError(f"{where}: the {side} has {length} tokens, more than task.data.max_{side}_len={limit}. Raise "
                                        "the limit, or set task.data.too_long=truncate (cut to the limit) or skip (leave such pairs out).")
                    long.append(where)
                    if self.too_long == "skip":
                        continue
                    s, t = s[: self.max_source_len or len(s)], t[: self.max_target_len or len(t)]
                src.append(s), tgt.append(t), kept.append(p)
            if long:
                verb = "left out" if self.too_long == "skip" else "truncated"
                log.warning("task.data: %d %s pairs longer than max_source_len=%s / max_target_len=%s were %s (the first: %s)",
                            len(long), split, self.max_source_len, self.max_target_len, verb, long[0])
            self.splits[split] = PairsDataset(src, tgt, kept)

    def codecs(self) -> dict[str, Any]:
        """The tokeniser and vocabularies as plain values (what a checkpoint stores)."""
        bpe = self.source._bpe.to_str() if self.source._bpe is not None else None
        return {"tokenizer": self.source.tokenizer, "lowercase": self.source.lowercase, "source_words": list(self.source.vocab.words),
                "target_words": list(self.target.vocab.words), "bpe": bpe, "reverse_target": self.target.reverse}

    def model_kwargs(self) -> dict[str, Any]:
        if self.source is None:
            raise RuntimeError("Seq2SeqDataModule.model_kwargs() needs setup() first.")
        return {"codecs": self.codecs()}

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> DataLoader:
        return self.bucketed_loader(self.splits[split], batch_size, shuffle, self.bucket_batches)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.batch_size, True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self.eval_batch_size, False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.eval_batch_size, False)

