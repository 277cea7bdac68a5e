"""Sentence classifier: embedding → encoder → dropout → linear, where the encoder is a recurrent
layer with a pooling (`RecurrentEncoder`) or a fastText-style bag of words and bigrams (`BagOfNgrams`).

Padding never changes a prediction: the recurrent layer gets the lengths (padded steps reach no
state and output zero), every pooling masks the padded steps, and the bag averages real tokens
only; so a sentence alone and the same sentence padded in a batch give the same logits.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnlab.data.text import PAD_ID, UNK_ID

POOLINGS = ("last", "mean", "max", "attention")
ENCODERS = ("rnn", "bag")
_BIGRAM_PRIME = 1_000_003  # bigram (a, b) hashes to (a·P + b) mod buckets: the same buckets on every run


def length_mask(lengths: Tensor, steps: int) -> Tensor:
    """(B, T) bool, True at the real steps t < lengths[b]."""
    return torch.arange(steps, device=lengths.device) < lengths[:, None]


def _sentence_norm(t: Tensor) -> Tensor:
    """t: (B, T, E) → each sentence's L2 norm over all its steps and features, (B, 1, 1), detached."""
    return t.detach().flatten(1).norm(dim=1).clamp_min(1e-12)[:, None, None]


class Pooling(nn.Module):
    """One vector per sentence from the recurrent layer's outputs, padded steps left out.

    Args:
        kind: 'last' (forward direction at the last real step, backward direction at step 0: each
            direction's final state), 'mean', 'max' (per feature), or 'attention' (a learned
            weighted mean: score_t = v·tanh(W o_t + b), softmax over the real steps).
        size: F, the features of each step (D·H).
        num_directions: D (1 or 2); 'last' reads the halves of a bidirectional output apart.
    """

    def __init__(self, kind: str, size: int, num_directions: int = 1) -> None:
        super().__init__()
        self.kind, self.num_directions = kind, num_directions
        if kind == "attention":
            self.score = nn.Sequential(nn.Linear(size, size), nn.Tanh(), nn.Linear(size, 1, bias=False))

    def forward(self, out: Tensor, lengths: Tensor) -> Tensor:
        """out: (B, T, F), lengths: (B,) → (B, F)."""
        mask = length_mask(lengths, out.size(1))  # (B, T)
        if self.kind == "last":
            rows = torch.arange(out.size(0), device=out.device)
            last = out[rows, lengths - 1]  # (B, F): each sequence's last real step
            if self.num_directions == 1:
                return last
            half = out.size(2) // 2  # backward direction: its final state is its output at t = 0
            return torch.cat([last[:, :half], out[:, 0, half:]], 1)
        if self.kind == "mean":
            return (out * mask[..., None]).sum(1) / lengths[:, None].to(out.dtype)
        if self.kind == "max":
            return out.masked_fill(~mask[..., None], float("-inf")).amax(1)
        scores = self.score(out).squeeze(2).masked_fill(~mask, float("-inf"))  # (B, T)
        weights = scores.softmax(1)  # exactly 0 at padded steps
        return (weights[..., None] * out).sum(1)


class RecurrentEncoder(nn.Module):
    """A recurrent layer over the embedded words, then a `Pooling`.

    Args:
        rnn: a layer from `rnnlab.tasks.settings.build_recurrent` (rnnlab's or torch.nn's, any cell).
        pooling: one of POOLINGS.
    """

    def __init__(self, rnn: nn.Module, pooling: str) -> None:
        super().__init__()
        self.rnn = rnn
        self.pool = Pooling(pooling, rnn.output_size, rnn.num_directions)
        self.output_size = rnn.output_size

    def forward(self, x: Tensor, emb: Tensor, lengths: Tensor) -> Tensor:
        """x: (B, T) ids (unused), emb: (B, T, E), lengths: (B,) → (B, D·H)."""
        return self.pool(self.outputs(emb, lengths), lengths)

    def outputs(self, emb: Tensor, lengths: Tensor) -> Tensor:
        """Every step's output, zero past each length: (B, T, D·H)."""
        return self.rnn(emb, lengths=lengths)[0]


class BagOfNgrams(nn.Module):
    """fastText's sentence vector (Joulin et al. 2017, "Bag of Tricks for Efficient Text
    Classification"): the mean of the word embeddings and of hashed bigram embeddings. No order
    beyond adjacent pairs: the baseline the recurrent encoders have to beat.

    Args:
        embedding_dim: E (the bigram embeddings have the words' size).
        buckets: bigram hash buckets; 0: words only.
    """

    def __init__(self, embedding_dim: int, buckets: int) -> None:
        super().__init__()
        self.buckets = buckets
        self.bigrams = nn.Embedding(buckets, embedding_dim) if buckets else None
        self.output_size = embedding_dim

    def forward(self, x: Tensor, emb: Tensor, lengths: Tensor) -> Tensor:
        """x: (B, T) ids, emb: (B, T, E) their embeddings, lengths: (B,) → (B, E)."""
        mask = length_mask(lengths, x.size(1))
        total = (emb * mask[..., None]).sum(1)
        count = lengths.to(emb.dtype)
        if self.bigrams is not None and x.size(1) > 1:
            pairs = (x[:, :-1] * _BIGRAM_PRIME + x[:, 1:]) % self.buckets  # (B, T-1)
            real = mask[:, 1:]  # the pair (t, t+1) is real when t+1 is
            total = total + (self.bigrams(pairs) * real[..., None]).sum(1)
            count = count + (lengths - 1).to(emb.dtype)
        return total / count[:, None]


class LanguageModelHead(nn.Module):
    """An auxiliary language model read from the recurrent layer's outputs (Rei 2017, "Semi-supervised
    Multitask Learning for Sequence Labeling"; Dai & Le 2015 pre-train with the same objective): the
    forward direction's output at t predicts word t+1, the backward direction's predicts word t-1,
    each through a projection to the embedding size and the word embeddings themselves as the output
    layer (tied), so words learn from their contexts as well as from the labels. Neither direction
    has seen the word it predicts. Only the `vocab` most frequent words are targets (the vocabulary is
    sorted by frequency); rarer ones are predicted as <unk>, which keeps the softmax small.

    Args:
        hidden_size: H, one direction's output size.
        num_directions: D (1 or 2).
        embedding_dim: E.
        vocab: target words (ids below it; the rest count as <unk>).
    """

    def __init__(self, hidden_size: int, num_directions: int, embedding_dim: int, vocab: int) -> None:
        super().__init__()
        self.hidden_size, self.vocab = hidden_size, vocab
        self.proj = nn.ModuleList(nn.Linear(hidden_size, embedding_dim) for _ in range(num_directions))
        self.bias = nn.Parameter(torch.zeros(vocab))

    def forward(self, out: Tensor, x: Tensor, lengths: Tensor, embedding: Tensor) -> Tensor:
        """out: (B, T, D·H) outputs, x: (B, T) ids, lengths: (B,), embedding: (V, E) word embeddings
        → the mean cross-entropy over every real (position, direction) prediction."""
        H, T = self.hidden_size, x.size(1)
        targets = x.masked_fill(x >= self.vocab, UNK_ID)
        mask = length_mask(lengths, T)
        feats, wanted = [], []
        for d, proj in enumerate(self.proj):
            h = out[..., d * H : (d + 1) * H]
            # forward: h_t -> word t+1 (real when t+1 is); backward: h_t -> word t-1 (real when t is).
            h, y, real = (h[:, :-1], targets[:, 1:], mask[:, 1:]) if d == 0 else (h[:, 1:], targets[:, :-1], mask[:, 1:])
            feats.append(proj(h[real]))
            wanted.append(y[real])
        feats, wanted = torch.cat(feats), torch.cat(wanted)
        if wanted.numel() == 0:  # one-word sentences only: nothing to predict
            return out.new_zeros(())
        return F.cross_entropy(F.linear(feats, embedding[: self.vocab], self.bias), wanted)


class SentimentClassifier(nn.Module):
    """Class logits of padded sentences.

    Args:
        vocab_size: V (id 0 is padding: its embedding stays zero).
        num_classes: C.
        embedding_dim: E.
        encoder: a `RecurrentEncoder` or `BagOfNgrams` (forward(x, emb, lengths) -> (B, output_size)).
        dropout: on the sentence vector, before the classifier.
        embedding_dropout: on the word embeddings, before the encoder.
        lm_vocab: > 0 (a `RecurrentEncoder` only): a `LanguageModelHead` over that many target words,
            for `forward_lm`; 0: none.
        word_dropout: in training, each word becomes <unk> with this probability. A vocabulary of every
            training word leaves <unk> untrained, yet a test sentence's unseen words all read as <unk>;
            this trains it, and the sentence's meaning without some of its words.
    """

    def __init__(self, vocab_size: int, num_classes: int, embedding_dim: int, encoder: nn.Module, dropout: float = 0.0,
                 embedding_dropout: float = 0.0, lm_vocab: int = 0, word_dropout: float = 0.0) -> None:
        super().__init__()
        self.word_dropout = word_dropout
        self.embed = nn.Embedding(vocab_size, embedding_dim, padding_idx=PAD_ID)
        self.embed_drop = nn.Dropout(embedding_dropout)
        self.encoder = encoder
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.output_size, num_classes)
        self.lm = None
        if lm_vocab:
            rnn = encoder.rnn
            self.lm = LanguageModelHead(rnn.output_size // rnn.num_directions, rnn.num_directions, embedding_dim, min(lm_vocab, vocab_size))

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        """x: (B, T) ids, PAD_ID past each length; lengths: (B,) int64, each >= 1 → logits (B, C)."""
        x = self.drop_words(x)
        return self.classify(x, self.embed(x), lengths)

    def classify(self, x: Tensor, emb: Tensor, lengths: Tensor) -> Tensor:
        """Logits (B, C) from the ids x (B, T) and their embeddings emb (B, T, E), before embedding dropout."""
        return self.head(self.drop(self.encoder(x, self.embed_drop(emb), lengths)))

    def forward_adversarial(self, x: Tensor, lengths: Tensor, y: Tensor, size: float) -> tuple[Tensor, Tensor]:
        """Adversarial training (Miyato et al. 2017, "Adversarial Training Methods for Semi-Supervised
        Text Classification"): the logits (B, C), as `forward`, and the loss at the embeddings moved
        the way that raises the loss fastest, each sentence's embeddings by `size` times their own norm
        (relative, so growing the embeddings cannot make the step negligible). Words rare in training
        get embeddings that hold their meaning under a small push, not only at one exact point.

        x: (B, T) ids, lengths: (B,), y: (B,) labels, size: the step's share of each sentence's norm.
        """
        x = self.drop_words(x)
        emb = self.embed(x)
        if not emb.requires_grad:  # frozen embeddings: the step still needs the loss's gradient at them
            emb = emb.detach().requires_grad_()
        logits = self.classify(x, emb, lengths)
        (grad,) = torch.autograd.grad(F.cross_entropy(logits, y), emb, retain_graph=True)
        grad = grad * length_mask(lengths, x.size(1))[..., None]  # padded steps stay where they are
        step = size * _sentence_norm(emb) * grad / _sentence_norm(grad)
        return logits, F.cross_entropy(self.classify(x, emb + step, lengths), y)

    def drop_words(self, x: Tensor) -> Tensor:
        """x with each real word replaced by UNK_ID with probability word_dropout (in training only)."""
        if not (self.training and self.word_dropout):
            return x
        hit = torch.rand(x.shape, device=x.device) < self.word_dropout
        return x.masked_fill(hit & (x != PAD_ID), UNK_ID)

    def forward_lm(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """The logits (B, C), as `forward`, and the auxiliary language model's loss from the same pass
        (its targets are the words as given, whatever `word_dropout` hid from the input)."""
        emb = self.embed_drop(self.embed(self.drop_words(x)))
        out = self.encoder.outputs(emb, lengths)
        logits = self.head(self.drop(self.encoder.pool(out, lengths)))
        return logits, self.lm(self.drop(out), x, lengths, self.embed.weight)


class Ensemble(nn.Module):
    """Several classifiers (alike or not), each from its own initialisation, trained side by side on
    their own losses; the prediction averages their class probabilities (returned as the log of that
    mean, so that softmax and argmax read it as logits). Independent members make independent
    errors, which the average cancels (Hansen & Salamon 1990; Lakshminarayanan et al. 2017).
    """

    def __init__(self, members: list[SentimentClassifier]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def member_logits(self, x: Tensor, lengths: Tensor) -> list[Tensor]:
        return [m(x, lengths) for m in self.members]

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        """x: (B, T) ids, lengths: (B,) → log of the members' mean probabilities (B, C)."""
        logp = torch.stack([logits.log_softmax(1) for logits in self.member_logits(x, lengths)])  # (n, B, C)
        return torch.logsumexp(logp, 0) - math.log(len(self.members))
