"""Character-level language-model data: one text file, a character vocabulary, TBPTT windows.

The text is split as one character stream into train/val/test (contiguous, e.g. 90/5/5). The
vocabulary is built on the training split only; characters that appear only in val/test map to
U+FFFD (added to the vocabulary only when needed), so the metrics stay honest about them.

Training batches follow char-rnn's truncated BPTT: the training stream is cut into `batch_size`
parallel streams, and batch k is window k (`bptt` characters) of every stream, so the hidden state
left by batch k is the right initial state for batch k+1. Each batch carries a `reset` flag that
is True for the first window of an epoch; the module zeroes its state there. With
`windows="random"`, every batch is `batch_size` windows at random offsets, each from a zero state.

Evaluation batches use the same layout but cover every target of the split exactly once (the last
stream is padded and the padding ignored), so val/loss is the mean over the whole split.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from rnnlab.data.batches import EpochIndices, ResumableTraining, base_seed, rank_world
from rnnlab.data.download import TINY_SHAKESPEARE, fetch
from rnnlab.utils.errors import UserError

log = logging.getLogger(__name__)

UNK = "\ufffd"  # stands for characters the training split never showed
IGNORE_INDEX = -100  # target value F.cross_entropy skips (padding of the last eval stream)
Batch = tuple[Tensor, Tensor, bool]  # x: (batch, time), y: (batch, time), reset the carried state


def read_text(path: str | os.PathLike, field: str = "task.data.path") -> str:
    """The content of a UTF-8 text file, or a UserError that names `field` and the fix."""
    path = Path(path)
    fix = f"Point {field} at a non-empty UTF-8 text file, or leave it null to train on tiny Shakespeare."
    if not path.exists():
        raise UserError(f"{field}={path}: no such file (looked for {path.resolve()}). {fix}")
    if not path.is_file():
        raise UserError(f"{field}={path} is not a regular file. {fix}")
    raw = path.read_bytes()
    if b"\x00" in raw:  # valid UTF-8 can hold NUL, but no text corpus does: it is a binary file
        raise UserError(f"{field}={path} looks binary (it contains NUL bytes at offset {raw.index(0)}). {fix}")
    try:
        text = raw.decode("utf-8-sig")  # -sig drops a leading byte-order mark
    except UnicodeDecodeError as e:
        raise UserError(
            f"{field}={path} is not UTF-8 text: byte 0x{raw[e.start]:02x} at offset {e.start} cannot be "
            f"decoded ({e.reason}). Convert it first (e.g. `iconv -f latin1 -t utf-8`). {fix}"
        ) from e
    if not text:
        raise UserError(f"{field}={path} is empty. {fix}")
    return text


class CharVocab:
    """Characters <-> integer ids. `chars[i]` is the character with id i.

    Args:
        chars: the vocabulary in id order (plain strings, so it can live in a checkpoint).
    """

    def __init__(self, chars: Sequence[str]) -> None:
        chars = list(chars)
        if not chars or any(not isinstance(c, str) or len(c) != 1 for c in chars) or len(set(chars)) != len(chars):
            raise ValueError("CharVocab: chars must be distinct single characters.")
        self.chars = chars
        self.stoi = {c: i for i, c in enumerate(chars)}
        self.unk = self.stoi.get(UNK)  # None: no stand-in, unknown characters are an error
        # Sorted code points let `encode` map a million characters with one searchsorted.
        codes = torch.tensor([ord(c) for c in chars], dtype=torch.int64)
        self._sorted_codes, self._order = codes.sort()

    @classmethod
    def build(cls, train: str, *others: str) -> CharVocab:
        """Sorted characters of `train`, plus UNK when `others` hold characters `train` lacks."""
        chars = sorted(set(train))
        if UNK not in chars and any(set(o) - set(chars) for o in others):
            chars.append(UNK)
        return cls(chars)

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str, what: str = "text") -> Tensor:
        """`text` as ids: (len(text),) int64. Unknown characters become UNK, or raise UserError."""
        codes = torch.frombuffer(bytearray(text.encode("utf-32-le")), dtype=torch.int32).long()
        pos = torch.searchsorted(self._sorted_codes, codes).clamp_(max=len(self) - 1)
        ids = self._order[pos]
        unknown = self._sorted_codes[pos] != codes
        if unknown.any():
            if self.unk is None:
                bad = sorted({chr(c) for c in codes[unknown].tolist()})
                raise UserError(
                    f"The {what} contains characters the vocabulary lacks: {''.join(bad)!r}. The vocabulary "
                    f"comes from the training split (for a checkpoint: the one it was trained on); use "
                    f"only its characters, or train on a text that contains these."
                )
            ids[unknown] = self.unk
        return ids

    def decode(self, ids: Tensor | Sequence[int]) -> str:
        if isinstance(ids, Tensor):
            ids = ids.tolist()
        return "".join(self.chars[i] for i in ids)


class StreamWindows(Dataset):
    """Consecutive `bptt` windows over `batch_size` parallel streams of one id sequence.

    Args:
        data: (n,) ids; the pairs (data[t], data[t+1]) are what the model learns.
        batch_size: number of parallel streams B.
        bptt: window length T.
        cover_all: False (training): each stream holds (n-1)//B pairs, the remainder is dropped and
            only full windows are served. True (evaluation): streams hold ceil((n-1)/B) pairs, the
            last one padded with IGNORE_INDEX targets, and the last window may be shorter, so every
            pair is served exactly once.
        rank, world: serve only this process's streams, every `world`-th from the `rank`-th (DDP:
            the ranks together cover each window once, and each rank carries its own streams' state).
    Item k: x (B/world, T), y (B/world, T), reset=(k == 0).
    """

    def __init__(self, data: Tensor, batch_size: int, bptt: int, cover_all: bool = False, rank: int = 0, world: int = 1) -> None:
        pairs = data.numel() - 1
        B, T = batch_size, bptt
        length = math.ceil(pairs / B) if cover_all else pairs // B
        x = torch.zeros(B * length, dtype=data.dtype)
        y = torch.full((B * length,), IGNORE_INDEX, dtype=data.dtype)
        used = min(pairs, B * length)
        x[:used], y[:used] = data[:used], data[1 : used + 1]
        self.x, self.y = x.view(B, length)[rank::world], y.view(B, length)[rank::world]
        self.bptt = T
        self.num_windows = math.ceil(length / T) if cover_all else length // T

    def __len__(self) -> int:
        return self.num_windows

    def __getitem__(self, k: int) -> Batch:
        if not 0 <= k < self.num_windows:
            raise IndexError(k)
        t = slice(k * self.bptt, (k + 1) * self.bptt)
        return self.x[:, t], self.y[:, t], k == 0


class RandomWindows(Dataset):
    """`batch_size` windows of `bptt` pairs at random offsets; each item starts from a zero state.

    Item k of epoch e draws its offsets from its own generator, seeded by (seed, e, k, rank): the same
    windows however far a run got before (an exact resume), and other windows on every DDP rank.
    """

    def __init__(self, data: Tensor, batch_size: int, bptt: int, num_batches: int, seed: int = 0, rank: int = 0) -> None:
        self.data, self.batch_size, self.bptt, self.num_batches = data, batch_size, bptt, num_batches
        self.seed, self.rank, self.epoch = seed, rank, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_batches

    def __getitem__(self, k: int) -> Batch:
        if not 0 <= k < self.num_batches:
            raise IndexError(k)
        g = torch.Generator().manual_seed(hash((self.seed, self.epoch, k, self.rank)) % (1 << 62))
        starts = torch.randint(0, self.data.numel() - self.bptt, (self.batch_size, 1), generator=g)
        idx = starts + torch.arange(self.bptt)
        return self.data[idx], self.data[idx + 1], True


WINDOWS = ("sequential", "random")


class CharLMDataModule(ResumableTraining, L.LightningDataModule):
    """Train/val/test character streams of one UTF-8 file, served as TBPTT windows.

    Args:
        path: the text file; None downloads tiny Shakespeare into the data directory.
        data_dir: where downloads are cached; None: $RNNLAB_DATA_DIR, else ./data.
        batch_size: parallel streams per batch (B).
        bptt: characters per window (T): the truncation length of backpropagation through time.
        eval_batch_size: streams for val/test; None uses batch_size. Capped at what the split allows.
        split: fractions of the stream for train, val, test (contiguous, in that order).
        windows: 'sequential' (carried state, char-rnn) or 'random' (random offsets, zero state).
        vocab: a fixed vocabulary (from a checkpoint) instead of building one on the training split.

    Sizes that the model takes from the data: `model_kwargs()` after `setup()`.
    """

    def __init__(
        self,
        path: str | None = None,
        data_dir: str | None = None,
        batch_size: int = 64,
        bptt: int = 128,
        eval_batch_size: int | None = None,
        split: Sequence[float] = (0.9, 0.05, 0.05),
        windows: str = "sequential",
        vocab: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("batch_size", batch_size), ("bptt", bptt), ("eval_batch_size", eval_batch_size)):
            if value is None and name == "eval_batch_size":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise UserError(f"task.data.{name}={value!r}: must be a positive integer (e.g. task.data.{name}=64).")
        split = [float(f) for f in split]
        if len(split) != 3 or any(f <= 0 for f in split) or sum(split) > 1 + 1e-9:
            raise UserError(
                f"task.data.split={split}: give three positive fractions for train, val and test that sum "
                f"to at most 1, e.g. task.data.split=[0.9,0.05,0.05]."
            )
        if windows not in WINDOWS:
            raise UserError(f"task.data.windows={windows!r}: choose one of {WINDOWS}.")
        self.path, self.data_dir = path, data_dir
        self.batch_size, self.bptt, self.windows, self.split = batch_size, bptt, windows, split
        self.eval_batch_size = eval_batch_size or batch_size
        self.vocab: CharVocab | None = CharVocab(vocab) if vocab is not None else None
        self.splits: dict[str, Tensor] = {}

    def resolve_path(self) -> Path:
        """The text file: `path`, or tiny Shakespeare fetched into the data directory."""
        return Path(self.path) if self.path is not None else fetch(TINY_SHAKESPEARE, self.data_dir)

    def prepare_data(self) -> None:
        self.resolve_path()  # download once, before any process calls setup

    def setup(self, stage: str | None = None) -> None:
        if self.splits:  # train.py calls setup before the Trainer does; read the file once
            return
        path = self.resolve_path()
        text = read_text(path)
        n = len(text)
        bounds, cum = [0], 0.0
        for f in self.split:
            cum += f
            bounds.append(min(n, round(cum * n)))
        texts = {name: text[bounds[i] : bounds[i + 1]] for i, name in enumerate(("train", "val", "test"))}
        for name, part in texts.items():
            if len(part) < 2:  # one character has nothing to predict
                raise UserError(
                    f"{path} has {n} characters, which leaves the {name} split ({len(part)} characters) too "
                    f"small to predict anything with task.data.split={self.split}. Use a longer text."
                )
        if self.vocab is None:
            self.vocab = CharVocab.build(texts["train"], texts["val"], texts["test"])
            if self.vocab.unk is not None and UNK not in texts["train"]:
                log.warning("val/test contain characters absent from the training split; they map to %r.", UNK)
        self.splits = {name: self.vocab.encode(part, f"{name} split of {path}") for name, part in texts.items()}
        train_pairs = self.splits["train"].numel() - 1
        B, T = self.batch_size, self.bptt
        if (self.windows == "sequential" and train_pairs // B < T) or train_pairs < T:
            need = B * T + 1 if self.windows == "sequential" else T + 1
            raise UserError(
                f"task.data.batch_size={B} and task.data.bptt={T} need at least {need} training characters "
                f"({'B streams of T' if self.windows == 'sequential' else 'one window of T'} characters, plus "
                f"one target), but the training split of {path} has {train_pairs + 1}. Lower "
                f"task.data.batch_size or task.data.bptt, or use a longer text."
            )
        log.info(
            "charlm data: %s, %d characters, vocabulary %d; train/val/test %d/%d/%d",
            path, n, len(self.vocab), *(t.numel() for t in self.splits.values()),
        )

    def model_kwargs(self) -> dict:
        """The sizes the model takes from the data, as keyword arguments for the task's module."""
        if self.vocab is None:
            raise RuntimeError("CharLMDataModule.model_kwargs() needs setup() first.")
        return {"vocab": list(self.vocab.chars)}

    def train_dataloader(self) -> DataLoader:
        data = self.splits["train"]
        rank, world = rank_world()
        if self.batch_size % world:
            raise UserError(
                f"task.data.batch_size={self.batch_size} streams cannot be shared evenly by {world} processes (trainer.devices "
                f"x trainer.num_nodes): make it a multiple of {world}, e.g. task.data.batch_size={self.batch_size // world * world or world}."
            )
        if self.windows == "random":
            per_epoch = (data.numel() - 1) // (self.batch_size * self.bptt)  # same characters per epoch
            ds: Dataset = RandomWindows(data, self.batch_size // world, self.bptt, max(1, per_epoch), base_seed(), rank)
        else:
            ds = StreamWindows(data, self.batch_size, self.bptt, rank=rank, world=world)
        # Items are already batches; the order is the TBPTT order, never shuffled, and a resumed run
        # continues at the window after the last one it trained on (its carried state is in the checkpoint).
        return self.resumable(ds, EpochIndices(ds))

    def _eval_loader(self, split: str) -> DataLoader:
        data = self.splits[split]
        rank, world = rank_world()
        batch = min(self.eval_batch_size, data.numel() - 1)
        # Under DDP each rank evaluates its own streams; the module adds up the ranks' sums and counts.
        ds = StreamWindows(data, batch, self.bptt, cover_all=True, rank=rank, world=min(world, batch))
        return DataLoader(ds, batch_size=None, shuffle=False)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")
