"""Character-level language model: embedding → recurrent layer → dropout → linear.

`CharLM` is the model (no Lightning needed to run it or to `generate`). `CharLMModule` trains it
with truncated BPTT (the state is carried across the windows the data module serves, detached, and
reset where a batch says so), logs loss / bits per character / perplexity, writes generated text at
every validation end of training, and continues raw text (`predict_text`). It meets the task
contract (`rnnlab.tasks.contract`); its hyper-parameters, the vocabulary included, are plain Python
values, so a checkpoint loads with `weights_only=True`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor, nn

from rnnlab.tasks.charlm.data import IGNORE_INDEX, Batch, CharVocab
from rnnlab.tasks.common import State, TaskModuleBase, detach_state
from rnnlab.tasks.settings import build_recurrent, layer_settings, optimizer_settings, scheduler_settings
from rnnlab.utils.errors import UserError

log = logging.getLogger(__name__)

DEFAULT_OPTIMIZER = {"name": "adam", "lr": 2e-3}


class CharLM(nn.Module):
    """Logits of the next character.

    Args:
        vocab_size: V.
        embedding_dim: E, the size of a character's embedding (the recurrent layer's input).
        rnn: a recurrent layer from `build_recurrent(model, E)`.
        dropout: on the recurrent output, before the linear read-out.
        tie_weights: share the read-out matrix with the embedding (needs rnn.output_size == E).
    """

    def __init__(self, vocab_size: int, embedding_dim: int, rnn: nn.Module, dropout: float = 0.0, tie_weights: bool = False) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embedding_dim)
        self.rnn = rnn
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(rnn.output_size, vocab_size)
        if tie_weights:
            if rnn.output_size != embedding_dim:
                raise UserError(
                    f"task.module.tie_weights=true needs the recurrent output size ({rnn.output_size}: "
                    f"model.hidden_size, ×2 if bidirectional) to equal task.module.embedding_dim ({embedding_dim}). "
                    f"Make them equal or set task.module.tie_weights=false."
                )
            self.head.weight = self.embed.weight

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """x: (batch, time) ids → logits (batch, time, V), final state (carry it to the next window)."""
        out, state = self.rnn(self.embed(x), state)
        return self.head(self.drop(out)), state

    @torch.no_grad()
    def generate(self, context: Tensor, length: int, temperature: float = 0.8, top_k: int | None = None,
                 generator: torch.Generator | None = None, banned: int | None = None) -> list[int]:
        """`length` ids drawn after `context: (time,)` ids (read in one call), one step at a time.

        temperature <= 0 is greedy; top_k keeps the k most likely ids; `banned` is never drawn.
        """
        logits, state = self(context[None])
        out: list[int] = []
        for _ in range(length):
            nxt = sample_next(logits[0, -1], temperature, top_k, generator, banned)
            out.append(nxt)
            logits, state = self(torch.tensor([[nxt]], device=context.device), state)
        return out


def sample_next(logits: Tensor, temperature: float, top_k: int | None, generator: torch.Generator | None, banned: int | None = None) -> int:
    """One id drawn from `logits: (V,)`; temperature <= 0 means greedy (argmax)."""
    logits = logits.detach().float().cpu().clone()
    if banned is not None:  # UNK is a stand-in for unseen characters, never something to write
        logits[banned] = -math.inf
    if temperature <= 0:
        return int(logits.argmax())
    logits = logits / temperature
    if top_k is not None and top_k > 0 and top_k < logits.numel():
        kth = logits.topk(top_k).values[-1]
        logits[logits < kth] = -math.inf
    return int(torch.multinomial(logits.softmax(-1), 1, generator=generator))


def check_sampling(length: Any, temperature: Any, top_k: Any) -> None:
    """UserError unless length >= 0 (int), temperature is a number and top_k is None or >= 1 (int)."""
    if isinstance(length, bool) or not isinstance(length, int) or length < 0:
        raise UserError(f"length={length!r}: must be a non-negative integer (the characters to generate).")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or math.isnan(temperature):
        raise UserError(f"temperature={temperature!r}: must be a number (<= 0 for greedy).")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k <= 0):
        raise UserError(f"top_k={top_k!r}: must be a positive integer, or null to sample from every character.")


CARRIED_STATE_KEY = "rnnlab_carried_state"  # checkpoint entry: the training windows' carried state


class CharLMModule(TaskModuleBase):
    """Lightning wrapper: TBPTT training, whole-split evaluation, samples, checkpoint round trip.

    Args:
        vocab: the characters in id order; from `CharLMDataModule.model_kwargs()` (never from the config).
        model: the recurrent layer's plain settings (`rnnlab.tasks.settings.layer_settings`, e.g.
            {"layer": "rnnlab", "cell": "lstm", "hidden_size": 256}); built with input_size=embedding_dim.
        embedding_dim: E.
        dropout: dropout on the recurrent output, in [0, 1).
        tie_weights: share embedding and read-out weights.
        optimizer: {"name": "adam" | "adamw" | "sgd" | "rmsprop", **kwargs}; default Adam(lr=2e-3).
        scheduler: None, or {"name": "warmup_cosine" | "constant", **kwargs}, stepped every step.
        sample_length: characters generated at each validation end of training (0: none).
        sample_prime: text the samples start from (characters outside the vocabulary are dropped).
    """

    name = "charlm"
    monitor = ("val/loss", "min")
    metrics = ("loss", "bpc", "ppl")
    unit = "chars"

    def __init__(
        self,
        vocab: list[str],
        model: dict[str, Any],
        embedding_dim: int = 128,
        dropout: float = 0.0,
        tie_weights: bool = False,
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        sample_length: int = 200,
        sample_prime: str = "\n",
    ) -> None:
        super().__init__()
        if isinstance(embedding_dim, bool) or not isinstance(embedding_dim, int) or embedding_dim <= 0:
            raise UserError(f"task.module.embedding_dim={embedding_dim!r}: must be a positive integer (the size of a character's embedding, e.g. 64).")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise UserError(f"task.module.dropout={dropout!r}: must be a number in [0, 1) (the fraction of the recurrent output dropped in training, e.g. 0.2).")
        if isinstance(sample_length, bool) or not isinstance(sample_length, int) or sample_length < 0:
            raise UserError(f"task.module.sample_length={sample_length!r}: must be a non-negative integer (0: no samples).")
        # Normalised before save_hyperparameters reads them: checkpoints keep the plain forms only.
        model = layer_settings(model)
        rnn = build_recurrent(model, embedding_dim)  # first: a bad model.* is reported before a bad optimizer
        optimizer = optimizer_settings(DEFAULT_OPTIMIZER if optimizer is None else optimizer)
        scheduler = scheduler_settings(scheduler)
        vocab = list(vocab)
        # logger=False: the hparams go to TensorBoard once, at the end, with the final metrics.
        self.save_hyperparameters(logger=False)
        self.vocab = CharVocab(vocab)
        self.net = CharLM(len(self.vocab), embedding_dim, rnn, dropout, tie_weights)
        self._train_state: State | None = None
        self._eval_state: State | None = None
        self._eval_sum = self._eval_count = None
        self._resumed_state = False

    # ---- training -------------------------------------------------------------------------

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        return self.net(x, state)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        x, y, reset = batch
        logits, state = self.net(x, None if reset else self._train_state)
        self._train_state = detach_state(state)  # carried to the next window, gradient stops here
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        self.log("train/loss", loss, prog_bar=True, batch_size=x.size(0))
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], batch_size=x.size(0))
        return loss

    def gradient_probe(self, batch: Batch) -> tuple[nn.Module, Tensor, Any]:
        """What rnnlab.utils.diagnostics.GradientThroughTime differentiates: the recurrent layer, its
        input on `batch` (from a zero state), and the loss of the window's last character given h_T."""
        x, y, _ = batch
        return self.net.rnn, self.net.embed(x), lambda h_last: F.cross_entropy(self.net.head(h_last), y[:, -1])

    def on_train_epoch_start(self) -> None:
        # The data also says reset at window 0; a run resumed in mid-epoch keeps the state it restored.
        if not self._resumed_state:
            self._train_state = None
        self._resumed_state = False

    # ---- evaluation: the mean over every target of the split, with the state carried -------

    def _eval_start(self) -> None:
        self._eval_state = None
        self._eval_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self._eval_count = torch.zeros((), dtype=torch.int64, device=self.device)

    def _eval_step(self, batch: Batch) -> None:
        x, y, reset = batch
        logits, self._eval_state = self.net(x, None if reset else self._eval_state)
        # Sums, not means: windows differ in how many real targets they hold (padding, short tail).
        self._eval_sum += F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=IGNORE_INDEX, reduction="sum")
        self._eval_count += (y != IGNORE_INDEX).sum()

    def _eval_end(self, stage: str) -> Tensor:
        total, count = self.sum_over_ranks(float(self._eval_sum), int(self._eval_count))  # DDP: each rank has its streams
        loss = torch.tensor(total / max(count, 1), dtype=torch.float32, device=self.device)
        self.log_dict({f"{stage}/loss": loss, f"{stage}/bpc": loss / math.log(2), f"{stage}/ppl": loss.exp()}, prog_bar=stage == "val")
        return loss

    def on_validation_epoch_start(self) -> None:
        self._eval_start()

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch)

    def on_validation_epoch_end(self) -> None:
        self._eval_end("val")
        # Samples show how training goes; eval.py's validation (not fitting) reports numbers only.
        if self.trainer.state.fn == "fit" and not self.trainer.sanity_checking and self.hparams.sample_length > 0:
            self.log_samples()

    def on_test_epoch_start(self) -> None:
        self._eval_start()

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch)

    def on_test_epoch_end(self) -> None:
        self._eval_end("test")

    def derived_metrics(self, metrics: Mapping[str, float]) -> dict[str, float]:
        """Bits per character and perplexity of every `<stage>/loss` in `metrics` (nats/char)."""
        out = {}
        for stage in ("val", "test"):
            loss = metrics.get(f"{stage}/loss")
            if loss is not None:
                out[f"{stage}/bpc"] = loss / math.log(2)
                out[f"{stage}/ppl"] = math.exp(min(loss, 700.0))  # exp overflows a float past ~709
        return out

    # ---- generation ------------------------------------------------------------------------

    @torch.no_grad()
    def generate(self, prime: str, length: int, temperature: float = 0.8, top_k: int | None = None,
                 generator: torch.Generator | None = None, what: str = "prime") -> str:
        """`length` characters that follow `prime` (not included); temperature <= 0 is greedy.

        The model reads a line break before the prime (when the prime does not start with one and
        the vocabulary has it): it was trained on a running stream, where a zero state is rare and
        a line break is the start of text it knows best; a zero state straight into mid-line
        characters can derail it (e.g. "ROMEO:" from a zero state gives gibberish, "\\nROMEO:" verse).

        Raises UserError when `prime` is empty or holds characters outside the vocabulary, or an
        option is out of range; `what` names the prime in those messages.
        """
        if not prime:
            raise UserError(f"{what} is empty: give the model at least one character to start from, e.g. ROMEO:.")
        check_sampling(length, temperature, top_k)
        was_training = self.training
        self.eval()
        context = prime if prime.startswith("\n") or "\n" not in self.vocab.stoi else "\n" + prime
        ids = self.vocab.encode(context, what).to(self.device)
        out = self.net.generate(ids, length, float(temperature), top_k, generator, banned=self.vocab.unk)
        self.train(was_training)
        return self.vocab.decode(out)

    def predict_text(self, inputs: Sequence[str], length: int = 200, temperature: float = 0.8,
                     top_k: int | None = None, seed: int | None = None) -> list[str]:
        """Each input followed by `length` generated characters (the text, continued).

        One generator, seeded once with `seed` (None: unseeded), draws for all inputs in order.
        """
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise UserError(f"seed={seed!r}: must be an integer, or null for a different text every time.")
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        return [text + self.generate(text, length, temperature, top_k, generator, what=f"input {i + 1}") for i, text in enumerate(inputs)]

    def log_samples(self) -> None:
        """Samples at temperature 0.8 and greedy, to TensorBoard (as text) and the console."""
        prime = "".join(c for c in self.hparams.sample_prime if c in self.vocab.stoi) or self.vocab.chars[0]
        # Own generator: sampling must not move the global RNG, or it would change the training run.
        gen = torch.Generator().manual_seed(self.global_step)
        n = self.hparams.sample_length
        samples = {"temperature_0.8": self.generate(prime, n, 0.8, generator=gen), "greedy": self.generate(prime, n, 0.0)}
        for name, text in samples.items():
            log.info("sample (%s) at step %d:\n%s%s", name, self.global_step, prime, text)
            for logger in self.loggers:
                if isinstance(logger, TensorBoardLogger):
                    # Indented: TensorBoard renders text as Markdown, and a code block keeps line breaks.
                    block = "    " + (prime + text).replace("\n", "\n    ")
                    logger.experiment.add_text(f"samples/{name}", block, self.global_step)

    # ---- checkpoints -----------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        # The state carried between windows: a run resumed in mid-epoch goes on from it, as the
        # uninterrupted run would have (a list of tensors: loadable with weights_only=True).
        state = self._train_state
        if state is not None:
            checkpoint[CARRIED_STATE_KEY] = [state] if isinstance(state, Tensor) else list(state)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        carried = checkpoint.get(CARRIED_STATE_KEY)
        if carried is not None:
            self._train_state = carried[0] if len(carried) == 1 else tuple(carried)
            self._resumed_state = True
        stored = checkpoint.get("hyper_parameters", {}).get("vocab")
        if stored is not None and list(stored) != self.vocab.chars:
            raise UserError(
                f"The checkpoint was trained on a vocabulary of {len(stored)} characters, but this run's data "
                f"gives {len(self.vocab)} different ones: resume or evaluate with the same task.data.path "
                f"(and task.data.split) the checkpoint was trained on."
            )

    def datamodule_kwargs(self) -> dict[str, Any]:
        """What a data module needs from a trained model: its vocabulary (for eval on any split)."""
        return {"vocab": list(self.vocab.chars)}
