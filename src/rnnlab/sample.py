"""Sampling behind `sample.py`: generate text from a char-LM checkpoint."""

from __future__ import annotations

import sys

import torch
from omegaconf import DictConfig

from rnnlab.tasks.charlm import CharLMModule
from rnnlab.utils.errors import UserError


def sample(cfg: DictConfig) -> str:
    """`cfg.length` characters after `cfg.prime`, from `cfg.ckpt_path` (loaded with weights_only).

    cfg: ckpt_path, prime, length, temperature (<= 0: greedy), top_k (None: all), seed, device.
    """
    top_k = cfg.get("top_k")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k <= 0):
        raise UserError(f"top_k={top_k!r}: must be a positive integer, or null to sample from every character.")
    if not isinstance(cfg.temperature, (int, float)) or isinstance(cfg.temperature, bool):
        raise UserError(f"temperature={cfg.temperature!r}: must be a number (<= 0 for greedy).")
    module = CharLMModule.from_checkpoint(cfg.ckpt_path).to(cfg.get("device", "cpu"))
    generator = torch.Generator().manual_seed(cfg.seed) if cfg.get("seed") is not None else None
    return module.generate(unescape(cfg.prime), cfg.length, float(cfg.temperature), top_k, generator)


def unescape(prime: object) -> str:
    r"""The prime with `\n` and `\t` read as newline and tab: a shell and Hydra's override grammar
    cannot pass a real newline, and play text often starts one (prime='ROMEO:\n')."""
    return str(prime).replace("\\n", "\n").replace("\\t", "\t")


def main(cfg: DictConfig) -> str:
    """What `sample.py` runs: print prime + sample, or a bad-input message and exit 2."""
    try:
        text = sample(cfg)
    except UserError as e:
        print(f"Error: {e}", file=sys.stderr)
        sys.exit(2)
    print(unescape(cfg.prime) + text)
    return text
