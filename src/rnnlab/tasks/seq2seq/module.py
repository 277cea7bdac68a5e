"""Sequence to sequence: the Lightning module around `Seq2Seq`.

Trains with teacher forcing (a ratio, optionally scheduled linearly over steps) and cross-entropy
over the real target positions (label smoothing optional). Each evaluation stage logs the
teacher-forced loss and token accuracy, then decodes greedily: exact match (every id right) and
BLEU (sacrebleu, on detokenised text against the raw references; over characters for character
tokens); with `decode.beam` > 1 also
`bleu_beam` and `exact_beam`. Which of them picks the best checkpoint is `monitor`. With
TensorBoard, every validation end draws the attention heatmaps of a few fixed validation pairs and
a table of sample outputs beside their references. Its hyper-parameters are plain values (the
tokeniser and vocabularies too), so a checkpoint loads with `weights_only=True`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sacrebleu
import torch
import torch.nn.functional as F
from torch import Tensor

from rnnlab.data.text import PAD_ID
from rnnlab.tasks.common import StagedEvaluation, TaskModuleBase
from rnnlab.tasks.seq2seq.data import BOS_ID, EOS_ID, Batch, codecs_from
from rnnlab.tasks.seq2seq.model import ATTENTIONS, Seq2Seq, max_target_length
from rnnlab.tasks.seq2seq.report import attention_image, samples_markdown
from rnnlab.tasks.settings import build_recurrent, layer_settings, optimizer_settings, scheduler_settings
from rnnlab.utils.errors import UserError

DEFAULT_OPTIMIZER = {"name": "adam", "lr": 1e-3}
DEFAULT_DECODE = {"beam": 1, "length_penalty": 0.0, "max_len_a": 1.5, "max_len_b": 10}
MONITORS = ("val/loss", "val/acc", "val/exact", "val/bleu", "val/exact_beam", "val/bleu_beam")


def _fail(key: str, value: Any, want: str) -> None:
    raise UserError(f"task.module.{key}={value!r}: must be {want}.")


def _number(value: Any, lo: float, hi: float) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and lo <= value <= hi


def _teacher_forcing(value: Any) -> dict[str, Any]:
    """{"start": r0, "end": r1, "steps": n or None}: the ratio falls linearly from r0 to r1 over n steps."""
    value = {"start": value, "end": value, "steps": None} if _number(value, 0, 1) else value
    if not isinstance(value, dict) or set(value) - {"start", "end", "steps"}:
        _fail("teacher_forcing", value, "a ratio in [0, 1], or {start: 1.0, end: 0.5, steps: 5000}")
    out = {"start": value.get("start", 1.0), "end": value.get("end", value.get("start", 1.0)), "steps": value.get("steps")}
    if not (_number(out["start"], 0, 1) and _number(out["end"], 0, 1)):
        _fail("teacher_forcing", value, "ratios in [0, 1]")
    if out["steps"] is not None and (isinstance(out["steps"], bool) or not isinstance(out["steps"], int) or out["steps"] < 1):
        _fail("teacher_forcing.steps", out["steps"], "a positive number of steps, or null")
    return out


def _decode(value: Any) -> dict[str, Any]:
    out = {**DEFAULT_DECODE, **(value or {})}
    if set(out) != set(DEFAULT_DECODE):
        _fail("decode", value, f"a mapping of {sorted(DEFAULT_DECODE)}")
    if isinstance(out["beam"], bool) or not isinstance(out["beam"], int) or out["beam"] < 1:
        _fail("decode.beam", out["beam"], "a positive integer (1: greedy only)")
    if not _number(out["length_penalty"], 0, 10):
        _fail("decode.length_penalty", out["length_penalty"], "a number in [0, 10] (0: none; 0.6 is common)")
    if not _number(out["max_len_a"], 0, 100) or isinstance(out["max_len_b"], bool) or not isinstance(out["max_len_b"], int):
        _fail("decode", value, "max_len_a a number >= 0 and max_len_b an integer (outputs stop at a·source length + b)")
    return out


class Seq2SeqModule(StagedEvaluation, TaskModuleBase):
    """Lightning wrapper: training with teacher forcing, decoding metrics, reports, prediction.

    Args:
        codecs: the tokeniser and vocabularies (`Seq2SeqDataModule.model_kwargs()`).
        model: the encoder's layer settings (`rnnlab.tasks.settings.layer_settings`; uni or bi).
        decoder: the decoder's layer settings; None: the encoder's, unidirectional.
        attention: one of ATTENTIONS.
        embedding_dim: E of the source and target embeddings.
        dropout: on the embeddings and before the output layer.
        tie_embeddings: the output layer shares the target embedding's weights.
        label_smoothing: of the training loss, in [0, 1).
        teacher_forcing: the share of steps fed the gold previous token: a ratio, or {start, end, steps}.
        decode: {beam, length_penalty, max_len_a, max_len_b}: beam search settings (beam 1: greedy
            only) and the longest output, a·source length + b.
        monitor: the validation metric that picks the best checkpoint (one of MONITORS).
        show_attention: validation pairs whose attention is drawn at each validation end (0: none).
        show_samples: validation outputs listed beside their references (0: none).
        optimizer, scheduler: as every task.
    """

    name = "seq2seq"
    monitor = ("val/loss", "min")  # the default; an instance sets its own from `monitor`
    metrics = ("loss", "acc", "exact", "bleu")
    unit = "pairs"

    def __init__(self, codecs: dict[str, Any], model: dict[str, Any], decoder: dict[str, Any] | None = None,
                 attention: str = "bahdanau", embedding_dim: int = 128, dropout: float = 0.0, tie_embeddings: bool = False,
                 label_smoothing: float = 0.0, teacher_forcing: Any = 1.0, decode: dict[str, Any] | None = None,
                 monitor: str = "val/bleu", show_attention: int = 3, show_samples: int = 8,
                 optimizer: dict[str, Any] | None = None, scheduler: dict[str, Any] | None = None) -> None:
        super().__init__()
        if attention not in ATTENTIONS:
            _fail("attention", attention, f"one of {ATTENTIONS} (none: the plain encoder-decoder with one context vector)")
        if isinstance(embedding_dim, bool) or not isinstance(embedding_dim, int) or embedding_dim < 1:
            _fail("embedding_dim", embedding_dim, "a positive integer")
        for key, value in (("dropout", dropout), ("label_smoothing", label_smoothing)):
            if not _number(value, 0, 0.999):
                _fail(key, value, "a number in [0, 1)")
        for key, value in (("show_attention", show_attention), ("show_samples", show_samples)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                _fail(key, value, "a non-negative integer (0: none)")
        if not isinstance(tie_embeddings, bool):
            _fail("tie_embeddings", tie_embeddings, "true or false")
        if monitor not in MONITORS:
            _fail("monitor", monitor, f"one of {MONITORS}")
        teacher_forcing, decode = _teacher_forcing(teacher_forcing), _decode(decode)
        if monitor.endswith("_beam") and decode["beam"] < 2:
            _fail("monitor", monitor, "a greedy metric unless task.module.decode.beam > 1")
        model = layer_settings(model)
        decoder = layer_settings({**model, "bidirectional": False} if decoder is None else decoder, "task.module.decoder")
        if decoder.get("bidirectional"):
            _fail("decoder.bidirectional", True, "false: the decoder generates left to right")
        self.source, self.target = codecs_from(codecs)
        encoder = build_recurrent(model, embedding_dim)
        dec_in = Seq2Seq.decoder_input_size(attention, embedding_dim, encoder.output_size, decoder["hidden_size"], tie_embeddings)
        decoder_layer = build_recurrent(decoder, dec_in, "task.module.decoder")
        optimizer = optimizer_settings(DEFAULT_OPTIMIZER if optimizer is None else optimizer)
        scheduler = scheduler_settings(scheduler)
        self.save_hyperparameters(logger=False)
        self.monitor = (monitor, "min" if monitor == "val/loss" else "max")
        self.net = Seq2Seq(len(self.source.vocab), len(self.target.vocab), encoder, decoder_layer, embedding_dim, attention,
                           BOS_ID, EOS_ID, dropout, tie_embeddings)
        self._eval: dict[str, Any] = {}

    # ---- training ----------------------------------------------------------------------------

    def teacher_forcing_ratio(self, step: int) -> float:
        tf = self.hparams.teacher_forcing
        if tf["steps"] is None:
            return float(tf["start"])
        return float(tf["start"] + (tf["end"] - tf["start"]) * min(1.0, step / tf["steps"]))

    def _loss(self, logits: Tensor, tgt_out: Tensor, smoothing: float = 0.0) -> Tensor:
        return F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=PAD_ID, label_smoothing=smoothing)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        ratio = self.teacher_forcing_ratio(self.global_step)
        logits, _ = self.net(batch.src, batch.src_len, batch.tgt_in, ratio)
        loss = self._loss(logits, batch.tgt_out, self.hparams.label_smoothing)
        n = batch.src_len.numel()
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        self.log("train/teacher_forcing", ratio, batch_size=n)
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], batch_size=n)
        return loss

    # ---- evaluation --------------------------------------------------------------------------

    def max_len(self, src_len: Tensor) -> int:
        d = self.hparams.decode
        return max_target_length(int(src_len.max()), d["max_len_a"], d["max_len_b"])

    def _eval_start(self) -> None:
        self._eval = {"loss": 0.0, "tokens": 0, "right": 0, "exact": 0, "exact_beam": 0, "pairs": 0, "hyp": [], "hyp_beam": [], "ref": []}

    def _eval_step(self, batch: Batch, stage: str) -> None:
        logits, _ = self.net(batch.src, batch.src_len, batch.tgt_in)
        real = batch.tgt_out != PAD_ID
        e = self._eval
        e["loss"] += float(F.cross_entropy(logits.flatten(0, 1), batch.tgt_out.flatten(), ignore_index=PAD_ID, reduction="sum"))
        e["tokens"] += int(real.sum())
        e["right"] += int(((logits.argmax(2) == batch.tgt_out) & real).sum())
        gold = [row[: int(r.sum()) - 1] for row, r in zip(batch.tgt_out.tolist(), real)]  # without eos
        data = self._split_pairs(stage)
        refs = [self.target.decode(g) if data is None else self.target_text(data[int(i)].target) for g, i in zip(gold, batch.index)]
        greedy, _ = self.net.greedy(batch.src, batch.src_len, self.max_len(batch.src_len))
        e["exact"] += sum(g == h for g, h in zip(gold, greedy))
        e["hyp"] += [self.target.decode(h) for h in greedy]
        e["ref"] += refs
        e["pairs"] += len(gold)
        d = self.hparams.decode
        if d["beam"] > 1:
            beams = self.net.beam_search(batch.src, batch.src_len, self.max_len(batch.src_len), d["beam"], d["length_penalty"])
            e["exact_beam"] += sum(g == h for g, h in zip(gold, beams))
            e["hyp_beam"] += [self.target.decode(h) for h in beams]

    def target_text(self, text: str) -> str:
        """A reference as BLEU compares it: the raw target, case folded as the model's text is."""
        return text.lower() if self.target.lowercase else text

    def _split_pairs(self, stage: str) -> list | None:
        """The raw pairs of the split being evaluated (references for BLEU), when a datamodule holds them."""
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        splits = getattr(dm, "splits", None)
        return splits[stage].texts if splits and stage in splits else None

    def _eval_end(self, stage: str) -> None:
        e = self._eval
        parts = self.gather_over_ranks(e)  # DDP: each rank decoded its share; BLEU needs the whole corpus
        if len(parts) > 1:
            e = {k: sum((p[k] for p in parts), [] if isinstance(v, list) else 0) for k, v in e.items()}
        # Characters are the tokens of the synthetic tasks: BLEU over character n-grams there (over
        # whole strings, one "word" each, every 2- to 4-gram would be missing and BLEU 0).
        bleu = lambda hyp: sacrebleu.corpus_bleu(hyp, [e["ref"]], tokenize="char" if self.target.tokenizer == "chars" else "13a").score  # noqa: E731
        values = {f"{stage}/loss": e["loss"] / max(e["tokens"], 1), f"{stage}/acc": e["right"] / max(e["tokens"], 1),
                  f"{stage}/exact": e["exact"] / max(e["pairs"], 1),
                  f"{stage}/bleu": bleu(e["hyp"]) if e["pairs"] else 0.0}
        if self.hparams.decode["beam"] > 1:
            values[f"{stage}/exact_beam"] = e["exact_beam"] / max(e["pairs"], 1)
            values[f"{stage}/bleu_beam"] = bleu(e["hyp_beam"]) if e["pairs"] else 0.0
        self.log_dict({k: torch.tensor(float(v)) for k, v in values.items()}, prog_bar=stage == "val")
        if stage == "val" and self._reporting():
            self._report()


    # ---- TensorBoard -------------------------------------------------------------------------

    def _report(self) -> None:
        pairs = self._split_pairs("val") or []
        n_att, n_txt = self.hparams.show_attention, self.hparams.show_samples
        shown = pairs[: max(n_att, n_txt)]  # the same fixed pairs at every validation
        if not shown:
            return
        outputs = self.translate([p.source for p in shown], with_attention=True)
        step = self.global_step
        for logger in self._tensorboard():
            for i, (pair, (text, tokens, weights)) in enumerate(zip(shown[:n_att], outputs)):
                if weights is not None:
                    image = attention_image(weights, self.source.tokens(pair.source), tokens + ["<eos>"], f"val pair {i}, step {step}")
                    logger.experiment.add_image(f"val/attention_{i}", image, step, dataformats="HWC")
            if n_txt:
                rows = [(p.source, self.target_text(p.target), text) for p, (text, _, _) in zip(shown[:n_txt], outputs)]
                logger.experiment.add_text("val/samples", samples_markdown(rows), step)

    # ---- prediction --------------------------------------------------------------------------

    @torch.no_grad()
    def translate(self, inputs: Sequence[str], beam: int = 1, length_penalty: float = 0.0,
                  with_attention: bool = False) -> list[tuple[str, list[str], Tensor | None]]:
        """(output text, output tokens, attention (T+1, S) or None) for each raw source, in input order.
        beam 1: greedy (the only decoding that returns attention)."""
        ids = []
        for i, text in enumerate(inputs):
            encoded = self.source.encode(text)
            if not encoded:
                raise UserError(f"input {i + 1} ({text!r}) has no tokens: nothing to translate. Remove the empty line.")
            ids.append(encoded)
        was_training = self.training
        self.eval()
        out: list[tuple[str, list[str], Tensor | None]] = []
        for start in range(0, len(ids), 64):
            chunk = ids[start : start + 64]
            src_len = torch.tensor([len(s) for s in chunk], device=self.device)
            src = torch.full((len(chunk), int(src_len.max())), PAD_ID, dtype=torch.long, device=self.device)
            for r, s in enumerate(chunk):
                src[r, : len(s)] = torch.tensor(s)
            if beam > 1 and not with_attention:
                hyps, weights = self.net.beam_search(src, src_len, self.max_len(src_len), beam, length_penalty), [None] * len(chunk)
            else:
                hyps, weights = self.net.greedy(src, src_len, self.max_len(src_len))
            out += [(self.target.decode(h), self.target.vocab.decode(h), w) for h, w in zip(hyps, weights)]
        self.train(was_training)
        return out

    def predict_text(self, inputs: Sequence[str], beam: int | None = None, length_penalty: float | None = None,
                     attention: bool = False, attention_dir: str = ".") -> list[str]:
        """Each input's translation. beam / length_penalty: None takes the trained decode settings;
        attention: also write each input's heatmap as attention_dir/attention_<n>.png (greedy)."""
        d = self.hparams.decode
        beam = d["beam"] if beam is None else beam
        length_penalty = d["length_penalty"] if length_penalty is None else length_penalty
        if isinstance(beam, bool) or not isinstance(beam, int) or beam < 1:
            raise UserError(f"task.predict.beam={beam!r}: must be a positive integer (1: greedy).")
        if not isinstance(attention, bool):
            raise UserError(f"task.predict.attention={attention!r}: must be true or false.")
        results = self.translate(inputs, beam, length_penalty, with_attention=attention)
        if attention:
            if self.net.attention is None:
                raise UserError("task.predict.attention=true: this model was trained with attention=none; it has no attention to draw.")
            folder = Path(attention_dir)
            folder.mkdir(parents=True, exist_ok=True)
            from matplotlib.image import imsave

            for n, (text, (_, tokens, weights)) in enumerate(zip(inputs, results), 1):
                imsave(folder / f"attention_{n}.png", attention_image(weights, self.source.tokens(text), tokens + ["<eos>"], text[:60]))
        return [text for text, _, _ in results]

    # ---- checkpoints -------------------------------------------------------------------------

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        stored = (checkpoint.get("hyper_parameters") or {}).get("codecs")
        if stored is not None and stored != self.hparams.codecs:
            raise UserError("The checkpoint was trained with another tokeniser or vocabulary than this run's data gives: "
                            "resume or evaluate it on the data it was trained on (the same task.data.* settings).")

    def datamodule_kwargs(self) -> dict[str, Any]:
        return {"codecs": dict(self.hparams.codecs)}
