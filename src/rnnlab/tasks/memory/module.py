"""Memory-span tasks: the Lightning module around `MemoryNet`.

Each evaluation stage logs the loss (copy: cross-entropy per step; adding: MSE), the memoryless
baseline's loss on the same task (`baseline`, see `rnnlab.tasks.memory.data`), `gain` = baseline /
loss (10 means ten times better than remembering nothing) and `acc` (copy: the recalled symbols
that are right; adding: the answers within 0.04 of the sum). Its hyper-parameters are plain values,
so a checkpoint loads with `weights_only=True`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnlab.tasks.common import StagedEvaluation, TaskModuleBase
from rnnlab.tasks.memory.data import ALPHABET, COPY_CLASSES, DELIMITER, NEAR, PROBLEMS, Batch, baseline
from rnnlab.tasks.settings import build_recurrent, layer_settings, optimizer_settings, scheduler_settings
from rnnlab.utils.errors import UserError

DEFAULT_OPTIMIZER = {"name": "adam", "lr": 1e-3}


class MemoryNet(nn.Module):
    """copy: one-hot symbols → recurrent layer → symbol logits at every step;
    adding: (value, marker) steps → recurrent layer → the final state → the sum.

    Args:
        problem: 'copy' | 'adding'.
        model: the recurrent layer's plain settings (`rnnlab.tasks.settings.layer_settings`).
    """

    def __init__(self, problem: str, model: dict[str, Any]) -> None:
        super().__init__()
        self.problem = problem
        self.rnn = build_recurrent(model, COPY_CLASSES if problem == "copy" else 2)
        self.head = nn.Linear(self.rnn.output_size, COPY_CLASSES if problem == "copy" else 1)

    def forward(self, x: Tensor) -> Tensor:
        """copy: x (B, L) ids → logits (B, L, 10); adding: x (B, T, 2) → predicted sums (B,)."""
        if self.problem == "copy":
            out, _ = self.rnn(F.one_hot(x, COPY_CLASSES).to(self.head.weight.dtype))
            return self.head(out)
        out, _ = self.rnn(x.to(self.head.weight.dtype))
        last = out[:, -1]
        if self.rnn.num_directions == 2:  # the backward direction's final state is its output at t = 0
            half = out.size(2) // 2
            last = torch.cat([last[:, :half], out[:, 0, half:]], 1)
        return self.head(last).squeeze(1)


class MemoryModule(StagedEvaluation, TaskModuleBase):
    """Lightning wrapper: training, the metrics beside the baseline, prediction, checkpoints.

    Args:
        problem, T, remember: the task; from `MemoryDataModule.model_kwargs()`.
        model: the recurrent layer's plain settings; its input is the task's (10 one-hot symbols, or
            2 features).
        optimizer: {"name": ..., **kwargs}; default Adam(lr=1e-3).
        scheduler: None, or {"name": "warmup_cosine" | "constant", **kwargs}, stepped every step.
    """

    name = "memory"
    monitor = ("val/loss", "min")
    metrics = ("loss", "baseline", "gain", "acc")
    unit = "sequences"

    def __init__(self, problem: str, T: int, remember: int, model: dict[str, Any],
                 optimizer: dict[str, Any] | None = None, scheduler: dict[str, Any] | None = None) -> None:
        super().__init__()
        if problem not in PROBLEMS:
            raise UserError(f"problem={problem!r}: one of {PROBLEMS}.")
        model = layer_settings(model)
        self.net = MemoryNet(problem, model)
        optimizer = optimizer_settings(DEFAULT_OPTIMIZER if optimizer is None else optimizer)
        scheduler = scheduler_settings(scheduler)
        self.save_hyperparameters()
        self.baseline = baseline(problem, T, remember)
        self._sums: Tensor | None = None

    def loss(self, out: Tensor, y: Tensor, reduction: str = "mean") -> Tensor:
        if self.hparams.problem == "copy":
            return F.cross_entropy(out.flatten(0, 1), y.flatten(), reduction=reduction)
        return F.mse_loss(out, y.to(out.dtype), reduction=reduction)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        loss = self.loss(self.net(batch.x), batch.y)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch.y.size(0))
        self.log("train/gain", self.baseline / loss.detach().clamp_min(1e-12), batch_size=batch.y.size(0))
        return loss

    def gradient_probe(self, batch: Batch) -> tuple[nn.Module, Tensor, Any]:
        """What rnnlab.utils.diagnostics.GradientThroughTime differentiates: the recurrent layer, its
        input, and the loss read from h_T alone (copy: the last recalled symbol; adding: the sum)."""
        if self.hparams.problem == "copy":
            x = F.one_hot(batch.x, COPY_CLASSES).to(self.net.head.weight.dtype)
            return self.net.rnn, x, lambda h_last: F.cross_entropy(self.net.head(h_last), batch.y[:, -1])
        x = batch.x.to(self.net.head.weight.dtype)
        return self.net.rnn, x, lambda h_last: F.mse_loss(self.net.head(h_last).squeeze(1), batch.y.to(x.dtype))

    # ---- evaluation ----------------------------------------------------------------------------

    def _eval_start(self) -> None:
        # loss sum, scored steps, right answers, answers (float64: exact over a whole split)
        self._sums = torch.zeros(4, dtype=torch.float64, device=self.device)

    def _eval_step(self, batch: Batch, stage: str) -> None:
        out = self.net(batch.x)
        if self.hparams.problem == "copy":
            recall = slice(-self.hparams.remember, None)
            right = (out[:, recall].argmax(2) == batch.y[:, recall]).sum()
            counts = (batch.y.numel(), batch.y[:, recall].numel())
        else:
            right = ((out - batch.y).abs() < NEAR).sum()
            counts = (batch.y.numel(), batch.y.numel())
        self._sums += torch.stack([self.loss(out, batch.y, "sum").double(), torch.tensor(float(counts[0])),
                                   right.double(), torch.tensor(float(counts[1]))]).to(self._sums)

    def _eval_end(self, stage: str) -> None:
        total, steps, right, answers = self.sum_over_ranks(*self._sums.tolist())  # DDP: each rank has its share
        loss = total / max(steps, 1)
        values = {f"{stage}/loss": loss, f"{stage}/baseline": self.baseline,
                  f"{stage}/gain": self.baseline / max(loss, 1e-12), f"{stage}/acc": right / max(answers, 1)}
        self.log_dict({k: torch.tensor(float(v)) for k, v in values.items()}, prog_bar=stage == "val")

    # ---- prediction ----------------------------------------------------------------------------

    @torch.no_grad()
    def predict_text(self, inputs: Sequence[str]) -> list[str]:
        """copy: `remember` digits 1-8 ("31415926 53") → the digits the model recalls after T blanks.
        adding: numbers separated by spaces or commas, the two to add marked with '*'
        ("0.2 *0.7 0.1 *0.4") → "<predicted sum>\\t<true sum>"."""
        self.eval()
        return [self._predict_one(i, text) for i, text in enumerate(inputs, 1)]

    def _predict_one(self, n: int, text: str) -> str:
        p = self.hparams
        if p.problem == "copy":
            digits = re.sub(r"\s", "", text)
            if len(digits) != p.remember or any(c not in "12345678" for c in digits):
                raise UserError(f"input {n} ({text!r}): give {p.remember} digits from 1 to 8 (the symbols to remember), e.g. "
                                f"{'12345678'[: p.remember].ljust(p.remember, '1')}.")
            x = torch.zeros(1, p.T + 2 * p.remember, dtype=torch.long, device=self.device)
            x[0, : p.remember] = torch.tensor([int(c) for c in digits])
            x[0, p.T + p.remember - 1] = DELIMITER
            recalled = self.net(x)[0, -p.remember :, 1 : ALPHABET + 1].argmax(1) + 1  # the symbols only
            return "".join(str(int(c)) for c in recalled)
        fields = [f for f in re.split(r"[\s,]+", text.strip()) if f]
        try:
            steps = [(float(f.lstrip("*")), f.startswith("*")) for f in fields]
        except ValueError as e:
            raise UserError(f"input {n} ({text!r}): every field must be a number, the two to add marked with '*' ({e}).") from e
        marked = [v for v, m in steps if m]
        if len(steps) < 2 or len(marked) != 2:
            raise UserError(f"input {n} ({text!r}): give at least two numbers and mark exactly two of them with '*', "
                            f"e.g. '0.2 *0.7 0.1 *0.4' (found {len(marked)} marked).")
        x = torch.tensor([[[v, float(m)] for v, m in steps]], device=self.device)
        return f"{float(self.net(x)[0]):.4f}\t{sum(marked):.4f}"

    def datamodule_kwargs(self) -> dict[str, Any]:
        p = self.hparams
        return {"name": p.problem, "T": p.T, "remember": p.remember}
