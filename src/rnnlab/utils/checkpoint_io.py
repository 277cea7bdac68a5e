"""Checkpoints written so that a kill at any moment leaves the previous file readable."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, but a local checkpoint is written to a temporary file beside
    its target, flushed to disk, then renamed over it (`os.replace`: atomic on POSIX and Windows).
    A run killed while saving keeps the previous `last.ckpt` whole; what it leaves is a
    `.<name>.<pid>.tmp` file, removed by the next save into that folder.

    (Lightning's own writer goes through an fsspec transaction, whose temporary file lives in the
    system's temp directory: where that is another file system, the commit is a copy, and a kill in
    the middle of it leaves a truncated checkpoint.) Remote paths (s3://, ...) keep Lightning's way.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        if "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a killed save
            stale.unlink(missing_ok=True)
        tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
