"""Sampling behind `sample.py`: charlm's own spelling of predict.py (one prime, text on stdout)."""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from rnnlab.entry import required
from rnnlab.tasks import load_module
from rnnlab.utils.errors import UserError


def sample(cfg: DictConfig) -> str:
    """`cfg.length` characters after `cfg.prime`, from `cfg.ckpt_path` (loaded with weights_only).

    cfg: ckpt_path, prime, length, temperature (<= 0: greedy), top_k (None: all), seed, device.
    """
    ckpt_path = required(cfg, "ckpt_path", 'python sample.py ckpt_path=outputs/charlm/runs/<time>/checkpoints/best.ckpt prime="ROMEO:"')
    module = load_module(ckpt_path, default="charlm")  # checkpoints that record no task are char-LMs
    if not callable(getattr(module, "generate", None)):
        raise UserError(f"ckpt_path={ckpt_path} holds a {module.name} model, which does not generate text: use predict.py.")
    module = module.to(cfg.get("device", "cpu"))
    generator = torch.Generator().manual_seed(cfg.seed) if cfg.get("seed") is not None else None
    return module.generate(unescape(cfg.prime), cfg.length, cfg.temperature, cfg.get("top_k"), generator)


def unescape(text: object) -> str:
    r"""The text with `\n` and `\t` read as newline and tab: a shell and Hydra's override grammar
    cannot pass a real newline, and play text often starts one (prime='ROMEO:\n')."""
    return str(text).replace("\\n", "\n").replace("\\t", "\t")


def main(cfg: DictConfig) -> str:
    """What `sample.py` runs: print prime + sample (errors: `rnnlab.entry.run`)."""
    text = sample(cfg)
    print(unescape(cfg.prime) + text)
    return text
