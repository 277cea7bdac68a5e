"""Sentiment classification (many-to-one): the Lightning module around `SentimentClassifier`.

Trains on `Batch(lengths, x, y)` with cross-entropy; logs loss, accuracy and macro-F1 per
evaluation stage (torchmetrics; val/acc picks the best checkpoint); with TensorBoard, draws the
validation confusion matrix and lists the most confidently misclassified validation sentences at
every validation end of training; classifies raw text (`predict_text`). It meets the task contract
(`rnnlab.tasks.contract`): its hyper-parameters, vocabulary, label names and tokeniser included,
are plain values, so a checkpoint loads with `weights_only=True`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score

from rnnlab.tasks.common import StagedEvaluation, TaskModuleBase
from rnnlab.tasks.sentiment.data import Batch
from rnnlab.tasks.sentiment.model import ENCODERS, POOLINGS, BagOfNgrams, Ensemble, RecurrentEncoder, SentimentClassifier
from rnnlab.tasks.sentiment.report import Mistake, confusion_image, mistakes_markdown, worst
from rnnlab.data.text import PAD_ID, Vocab, check_tokenizer, pad_batch, tokenize
from rnnlab.tasks.sentiment.vectors import load_vectors
from rnnlab.tasks.settings import build_recurrent, layer_settings, optimizer_settings, scheduler_settings
from rnnlab.utils.errors import UserError

DEFAULT_OPTIMIZER = {"name": "adam", "lr": 1e-3}
log = logging.getLogger(__name__)


def _check(value: Any, key: str, ok: bool, want: str) -> None:
    if not ok:
        raise UserError(f"task.module.{key}={value!r}: must be {want}.")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_fraction(value: Any) -> bool:
    return _is_number(value) and 0 <= value < 1


def _embeddings_settings(value: Any) -> dict[str, Any]:
    """{"path": str | None, "freeze": bool} from task.embeddings (None: no pretrained vectors)."""
    value = {} if value is None else value
    if not isinstance(value, dict) or set(value) - {"path", "freeze"}:
        raise UserError(f"task.embeddings={value!r}: must be {{path: <word2vec/GloVe text file> or null, freeze: true|false}}.")
    path, freeze = value.get("path"), value.get("freeze", False)
    if not (path is None or isinstance(path, str)):
        raise UserError(f"task.embeddings.path={path!r}: must be a word2vec/GloVe text file's path, or null.")
    if not isinstance(freeze, bool):
        raise UserError(f"task.embeddings.freeze={freeze!r}: must be true or false.")
    return {"path": path, "freeze": freeze}


def _member_specs(ensemble: Any, model: dict[str, Any], pooling: str) -> list[tuple[dict[str, Any], str, str]]:
    """(layer settings, pooling, where their errors point) of each member: `ensemble` copies of model
    and pooling, or each listed member's changes applied to them."""
    if _is_int(ensemble) and ensemble >= 1:
        return [(model, pooling, "model")] * ensemble
    if not (isinstance(ensemble, list) and ensemble and all(isinstance(m, dict) for m in ensemble)):
        raise UserError(f"task.module.ensemble={ensemble!r}: must be a positive integer (1: one model; n: n models averaged), "
                        f"or a list of members, each what it changes of model.* and pooling, e.g. [{{}}, {{cell: gru}}, {{pooling: mean}}].")
    specs = []
    for i, changes in enumerate(ensemble):
        changes = dict(changes)
        pool = changes.pop("pooling", pooling)
        _check(pool, f"ensemble[{i}].pooling", pool in POOLINGS, f"one of {POOLINGS}")
        where = f"task.module.ensemble[{i}]"
        specs.append((layer_settings({**model, **changes}, where), pool, where))
    return specs


class SentimentModule(StagedEvaluation, TaskModuleBase):
    """Lightning wrapper: training, evaluation metrics, TensorBoard reports, prediction, checkpoints.

    Args:
        vocab: the words in id order (<pad>, <unk>, ...); from `SentimentDataModule.model_kwargs()`.
        labels: the class names in id order; from the data module too.
        model: the recurrent layer's plain settings (`rnnlab.tasks.settings.layer_settings`); built
            with input_size=embedding_dim. Unused with encoder='bag'.
        tokenizer, lowercase: how the data module made tokens; `predict_text` does the same.
        encoder: 'rnn' (the recurrent layer of `model`, then `pooling`) or 'bag' (fastText-style
            mean of word and bigram embeddings: the non-recurrent baseline).
        pooling: 'last' | 'mean' | 'max' | 'attention' (encoder='rnn').
        embedding_dim: E.
        embedding_dropout: dropout on the word embeddings, in [0, 1).
        dropout: dropout on the sentence vector before the classifier, in [0, 1).
        bigram_buckets: hash buckets of the bag's bigram embeddings (0: words only).
        optimizer: {"name": ..., **kwargs}; default Adam(lr=1e-3).
        scheduler: None, or {"name": "warmup_cosine" | "constant", **kwargs}, stepped every step.
        show_errors: misclassified validation sentences shown in TensorBoard at each validation end (0: none).
        embeddings: {"path": a word2vec/GloVe text file or None, "freeze": bool}: pretrained vectors
            that start a new training's word embeddings (read at fit start, so a checkpoint never
            needs the file); freeze keeps the embeddings fixed.
        ensemble: n independently initialised models trained side by side, each on its own loss, whose
            probabilities are averaged to predict (1: one model). n times the cost, one checkpoint. Or a
            list, one member each: what it changes of `model` and `pooling` ({} for none), e.g.
            [{}, {cell: gru}, {pooling: mean}]: members that differ err more differently.
        lm_weight: > 0 (encoder='rnn'): add this times an auxiliary language model's loss to the
            training loss (`LanguageModelHead`: each direction predicts the next word along its way, so
            the encoder and the embeddings also learn from the training text itself); 0: none.
        lm_vocab: the auxiliary language model's target words, the most frequent (rarer ones count as <unk>).
        word_dropout: in training, each word becomes <unk> with this probability, in [0, 1).
        adversarial: > 0: adversarial training (`SentimentClassifier.forward_adversarial`): add the
            loss at each sentence's embeddings moved by this share of their norm in the direction
            that raises the loss most; about twice the cost of a step. 0: none.
    """

    name = "sentiment"
    monitor = ("val/acc", "max")
    metrics = ("acc", "f1", "loss")
    unit = "sentences"

    def __init__(
        self,
        vocab: list[str],
        labels: list[str],
        model: dict[str, Any],
        tokenizer: str = "words",
        lowercase: bool = True,
        encoder: str = "rnn",
        pooling: str = "max",
        embedding_dim: int = 128,
        embedding_dropout: float = 0.0,
        dropout: float = 0.0,
        bigram_buckets: int = 65536,
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        show_errors: int = 5,
        embeddings: dict[str, Any] | None = None,
        ensemble: int | list[dict[str, Any]] = 1,
        lm_weight: float = 0.0,
        lm_vocab: int = 5000,
        word_dropout: float = 0.0,
        adversarial: float = 0.0,
    ) -> None:
        super().__init__()
        _check(encoder, "encoder", encoder in ENCODERS, f"one of {ENCODERS} (rnn: the recurrent layer of model=; bag: the fastText-style baseline)")
        _check(pooling, "pooling", pooling in POOLINGS, f"one of {POOLINGS}")
        _check(embedding_dim, "embedding_dim", _is_int(embedding_dim) and embedding_dim > 0, "a positive integer (the size of a word's embedding, e.g. 128)")
        _check(dropout, "dropout", _is_fraction(dropout), "a number in [0, 1) (the fraction of the sentence vector dropped in training)")
        _check(embedding_dropout, "embedding_dropout", _is_fraction(embedding_dropout), "a number in [0, 1)")
        _check(word_dropout, "word_dropout", _is_fraction(word_dropout), "a number in [0, 1) (the share of words read as <unk> in training)")
        _check(bigram_buckets, "bigram_buckets", _is_int(bigram_buckets) and bigram_buckets >= 0, "a non-negative integer (0: no bigrams)")
        _check(show_errors, "show_errors", _is_int(show_errors) and show_errors >= 0, "a non-negative integer (0: none)")
        embeddings = _embeddings_settings(embeddings)
        check_tokenizer(tokenizer, lowercase, "task.module")
        labels = [str(n) for n in labels]
        if len(labels) < 2 or len(set(labels)) != len(labels):
            raise UserError(f"labels={labels}: a classifier needs at least two distinct class names.")
        # Normalised before save_hyperparameters reads them: checkpoints keep the plain forms only.
        model = layer_settings(model)
        specs = _member_specs(ensemble, model, pooling)
        _check(lm_weight, "lm_weight", _is_number(lm_weight) and lm_weight >= 0,
               "a non-negative number (the auxiliary language model's share of the loss; 0: none)")
        _check(lm_vocab, "lm_vocab", _is_int(lm_vocab) and lm_vocab >= 2, "an integer >= 2 (the most frequent words the language model predicts)")
        _check(adversarial, "adversarial", _is_number(adversarial) and adversarial >= 0,
               "a non-negative number (the adversarial step's share of each sentence's embedding norm, e.g. 0.05; 0: none)")
        if adversarial and lm_weight:
            raise UserError(f"task.module.adversarial={adversarial} and task.module.lm_weight={lm_weight}: the two extra losses "
                            f"are not combined; set one of them to 0.")
        if lm_weight and encoder != "rnn":
            raise UserError(f"task.module.lm_weight={lm_weight}: the auxiliary language model reads a recurrent layer's outputs; "
                            f"task.module.encoder={encoder!r} has none. Set encoder=rnn, or lm_weight=0.")

        def member(layer: dict[str, Any], pool: str, where: str) -> SentimentClassifier:
            if encoder == "rnn":
                body: nn.Module = RecurrentEncoder(build_recurrent(layer, embedding_dim, where), pool)  # first: a bad model.* is named before a bad optimizer
            else:
                body = BagOfNgrams(embedding_dim, bigram_buckets)
            return SentimentClassifier(len(vocab), len(labels), embedding_dim, body, dropout, embedding_dropout,
                                       lm_vocab if lm_weight else 0, word_dropout)

        members = [member(*spec) for spec in specs]
        optimizer = optimizer_settings(DEFAULT_OPTIMIZER if optimizer is None else optimizer)
        scheduler = scheduler_settings(scheduler)
        vocab = list(vocab)
        self.save_hyperparameters(logger=False)  # to TensorBoard once, at the end, with the final metrics
        self.vocab = Vocab(vocab)
        self.labels = labels
        # One model is the net itself (and its checkpoints' keys stay those of a plain classifier).
        self.net = members[0] if len(members) == 1 else Ensemble(members)
        self.members = list(members)
        for m in self.members:
            m.embed.weight.requires_grad_(not embeddings["freeze"])
        C = len(labels)
        # One set per stage: validation and test must never share accumulated counts.
        self.stage_metrics = nn.ModuleDict({
            stage: nn.ModuleDict({"acc": MulticlassAccuracy(C, average="micro"), "f1": MulticlassF1Score(C, average="macro"),
                                  "confusion": MulticlassConfusionMatrix(C)})
            for stage in ("val", "test")
        })
        self._loss_sum: Tensor | None = None
        self._count: Tensor | None = None
        self._mistakes: list[Mistake] = []

    # ---- training --------------------------------------------------------------------------

    def _check_orders(self, orders: int) -> None:
        """UserError unless `orders` (task.data.orders: batches per step) is 1 or one per member."""
        if orders not in (1, len(self.members)):
            raise UserError(f"task.data.orders={orders} gives each step {orders} batches, one per ensemble member, but "
                            f"the model has {len(self.members)} (task.module.ensemble): set task.data.orders to {len(self.members)}, or 1.")

    def setup(self, stage: str) -> None:
        if stage == "fit":  # before anything is written
            self._check_orders(getattr(getattr(self._trainer, "datamodule", None), "orders", 1))
        # Before Lightning restores a checkpoint (a resumed run keeps its trained embeddings), and never
        # for eval / predict: the vectors file is needed only to start a training.
        path = self.hparams.embeddings["path"]
        if stage == "fit" and path is not None:
            vectors, found = load_vectors(path, self.vocab.words, self.hparams.embedding_dim)
            found[PAD_ID] = False  # padding stays zero
            with torch.no_grad():
                for m in self.members:
                    m.embed.weight[found] = vectors[found].to(m.embed.weight)
            n = int(found.sum())
            log.info("task.embeddings.path=%s: %d of %d vocabulary words (%.1f%%) found; the rest keep their "
                     "random initialisation", path, n, len(found), 100 * n / len(found))
            self.embeddings_found = n / len(found)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        """x: (B, T) ids, lengths: (B,) → logits (B, C)."""
        return self.net(x, lengths)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        # One batch for every member, or (task.data.orders) a tuple of batches, one for each.
        batches = [batch] * len(self.members) if isinstance(batch[0], Tensor) else list(batch)
        if len(batches) != len(self.members):
            self._check_orders(len(batches))
        # An ensemble's members learn side by side, each from its own loss (not the average's).
        losses, lm_losses, adv_losses = [], [], []
        for m, (lengths, x, y) in zip(self.members, batches):
            if self.hparams.adversarial:
                logits, adv_loss = m.forward_adversarial(x, lengths, y, self.hparams.adversarial)
                adv_losses.append(adv_loss)
            elif m.lm is None:
                logits = m(x, lengths)
            else:
                logits, lm_loss = m.forward_lm(x, lengths)
                lm_losses.append(lm_loss)
            losses.append(F.cross_entropy(logits, y))
        loss = torch.stack(losses).mean()
        self.log("train/loss", loss, prog_bar=True, batch_size=y.numel())
        if lm_losses:
            lm_loss = torch.stack(lm_losses).mean()
            self.log("train/lm_loss", lm_loss, batch_size=y.numel())
            loss = loss + self.hparams.lm_weight * lm_loss
        if adv_losses:  # Miyato et al.: the clean and the adversarial loss, weighted alike
            adv_loss = torch.stack(adv_losses).mean()
            self.log("train/adv_loss", adv_loss, batch_size=y.numel())
            loss = loss + adv_loss
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], batch_size=y.numel())
        return loss

    # ---- evaluation ------------------------------------------------------------------------

    def _eval_start(self) -> None:
        self._loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self._count = torch.zeros((), dtype=torch.int64, device=self.device)
        self._mistakes = []

    def _eval_step(self, batch: Batch, stage: str) -> None:
        lengths, x, y = batch
        logits = self.net(x, lengths)
        # Sums, not batch means: batches differ in size, and val/loss is the mean over every sentence.
        self._loss_sum += F.cross_entropy(logits, y, reduction="sum")
        self._count += y.numel()
        preds = logits.argmax(1)
        for metric in self.stage_metrics[stage].values():
            metric.update(preds, y)
        if stage == "val" and self._reporting():
            self._collect_mistakes(x, lengths, y, logits)

    def _eval_end(self, stage: str) -> None:
        metrics = self.stage_metrics[stage]
        total, count = self.sum_over_ranks(float(self._loss_sum), int(self._count))  # DDP: each rank has its share
        values = {f"{stage}/loss": torch.tensor(total / max(count, 1), dtype=torch.float32, device=self.device),
                  f"{stage}/acc": metrics["acc"].compute(), f"{stage}/f1": metrics["f1"].compute()}
        self.log_dict(values, prog_bar=stage == "val")
        if stage == "val" and self._reporting():
            self._report(metrics["confusion"].compute())
        for metric in metrics.values():
            metric.reset()


    # ---- TensorBoard: confusion matrix and mistakes ----------------------------------------

    def _collect_mistakes(self, x: Tensor, lengths: Tensor, y: Tensor, logits: Tensor) -> None:
        n = self.hparams.show_errors
        if n == 0:
            return
        prob, pred = logits.detach().softmax(1).max(1)
        wrong = (pred != y).nonzero().flatten().tolist()
        found = [Mistake(tuple(self.vocab.decode(x[i, : lengths[i]])), self.labels[int(y[i])], self.labels[int(pred[i])], float(prob[i])) for i in wrong]
        self._mistakes = worst(self._mistakes + found, n)  # keep only the n worst: memory stays small

    def _report(self, confusion: Tensor) -> None:
        step = self.global_step
        image = confusion_image(confusion, self.labels, f"validation, step {step}")
        for logger in self._tensorboard():
            logger.experiment.add_image("val/confusion_matrix", image, step, dataformats="HWC")
            if self.hparams.show_errors:
                logger.experiment.add_text("val/misclassified", mistakes_markdown(self._mistakes), step)

    # ---- prediction ------------------------------------------------------------------------

    @torch.no_grad()
    def predict_proba(self, inputs: Sequence[str], batch_size: int = 256) -> Tensor:
        """Class probabilities of raw sentences: (len(inputs), C), in input order.

        Raises UserError for an input with no tokens (nothing to classify), naming it by position.
        """
        _check(batch_size, "predict.batch_size", _is_int(batch_size) and batch_size > 0, "a positive integer")
        ids = []
        for i, text in enumerate(inputs):
            tokens = tokenize(text, self.hparams.tokenizer, self.hparams.lowercase)
            if not tokens:
                raise UserError(f"input {i + 1} ({text!r}) has no tokens: nothing to classify. Remove the empty line.")
            ids.append(self.vocab.encode(tokens))
        was_training = self.training
        self.eval()
        probs = torch.empty(len(ids), len(self.labels))
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # similar lengths together: little padding
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            x, lengths = pad_batch([ids[i] for i in chunk])
            probs[chunk] = self.net(x.to(self.device), lengths.to(self.device)).softmax(1).float().cpu()
        self.train(was_training)
        return probs

    def predict_text(self, inputs: Sequence[str], all_labels: bool = False, batch_size: int = 256) -> list[str]:
        """Each input's most likely label and its probability, e.g. "positive\\t0.934".

        Args:
            all_labels: also every label's probability, in label order ("...\\tnegative=0.066 positive=0.934").
            batch_size: sentences per forward pass.
        """
        _check(all_labels, "predict.all_labels", isinstance(all_labels, bool), "true or false")
        probs = self.predict_proba(inputs, batch_size)
        out = []
        for row in probs:
            p, k = row.max(0)
            line = f"{self.labels[int(k)]}\t{float(p):.3f}"
            if all_labels:
                line += "\t" + " ".join(f"{name}={float(q):.3f}" for name, q in zip(self.labels, row))
            out.append(line)
        return out

    # ---- checkpoints -----------------------------------------------------------------------

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        stored = checkpoint.get("hyper_parameters", {})
        for key, ours in (("vocab", self.vocab.words), ("labels", self.labels)):
            if stored.get(key) is not None and list(stored[key]) != list(ours):
                raise UserError(
                    f"The checkpoint was trained with other {key} ({len(stored[key])} entries; this run's data gives "
                    f"{len(ours)}): resume or evaluate it on the data it was trained on (the same task.data.* settings)."
                )

    def datamodule_kwargs(self) -> dict[str, Any]:
        """What a data module needs from a trained model: its vocabulary, labels and tokeniser."""
        return {"vocab": list(self.vocab.words), "label_names": list(self.labels),
                "tokenizer": self.hparams.tokenizer, "lowercase": self.hparams.lowercase}
