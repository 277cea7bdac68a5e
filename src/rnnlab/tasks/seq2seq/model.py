"""Encoder–decoder with attention (Sutskever et al. 2014; Bahdanau et al. 2015; Luong et al. 2015).

The encoder reads the embedded source with any recurrent layer (uni or bi, any depth); its outputs
are the memory (B, S, K), K = D·H_enc. The decoder is any unidirectional recurrent layer, run one
step at a time, the step being the same in training (teacher forcing) and in decoding:

    bahdanau:       ctx_t = attend(s_{t-1})                  s_t = rnn([e(y_{t-1}); ctx_t], s_{t-1})
    luong_dot/general:   s_t = rnn([e(y_{t-1}); õ_{t-1}], s_{t-1})   ctx_t = attend(s_t)   (input feeding)
    none:           ctx_t = c (the encoder's final state)   s_t = rnn([e(y_{t-1}); c], s_{t-1})
    all:            õ_t = tanh(W_o [s_t; ctx_t]),   p(y_t) = softmax(V õ_t + b)

with scores bahdanau v·tanh(W_q s + W_k m_j), luong_dot s·m_j, luong_general s·W m_j, softmax over
the real source positions only (padding gets weight exactly 0). `none` is the plain encoder–decoder
of the lecture: one context vector, the same at every step. The decoder starts from
tanh(W_b [encoder's final top-layer states, both directions]) in every layer (its cell state, if
any, from zeros), so any encoder size and direction count bridges to any decoder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnlab.data.text import PAD_ID

ATTENTIONS = ("none", "bahdanau", "luong_dot", "luong_general")


def length_mask(lengths: Tensor, steps: int) -> Tensor:
    """(B, S) bool, True at the real positions s < lengths[b]."""
    return torch.arange(steps, device=lengths.device) < lengths[:, None]


class Attention(nn.Module):
    """Weights over the memory's real positions for a query, and the context they give.

    Args:
        kind: 'bahdanau' | 'luong_dot' | 'luong_general'.
        query_size: the decoder state's size H.
        memory_size: K, the encoder outputs' size (luong_dot projects them to H when K != H).
    """

    def __init__(self, kind: str, query_size: int, memory_size: int) -> None:
        super().__init__()
        self.kind = kind
        if kind == "bahdanau":
            self.query = nn.Linear(query_size, query_size, bias=False)
            self.key = nn.Linear(memory_size, query_size)
            self.v = nn.Linear(query_size, 1, bias=False)
        elif kind == "luong_general" or memory_size != query_size:
            self.key = nn.Linear(memory_size, query_size, bias=False)  # s·W m_j as s·(W m_j)
        else:
            self.key = None

    def keys(self, memory: Tensor) -> Tensor:
        """What the scores compare a query with, made once per source: (B, S, K) -> (B, S, H)."""
        return memory if self.key is None else self.key(memory)

    def forward(self, query: Tensor, keys: Tensor, memory: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """query (B, H), keys (B, S, H), memory (B, S, K), mask (B, S) -> context (B, K), weights (B, S)."""
        if self.kind == "bahdanau":
            scores = self.v(torch.tanh(keys + self.query(query)[:, None])).squeeze(2)
        else:
            scores = torch.bmm(keys, query[:, :, None]).squeeze(2)
        weights = scores.masked_fill(~mask, float("-inf")).softmax(1)
        return torch.bmm(weights[:, None], memory).squeeze(1), weights


@dataclass
class Encoded:
    """What the decoder reads of one batch of sources (rows may be repeated for beams)."""

    memory: Tensor  # (B, S, K) encoder outputs
    keys: Tensor | None  # (B, S, H) the attention's keys, None for attention='none'
    mask: Tensor  # (B, S) real source positions
    context: Tensor  # (B, K) the final top-layer encoder state (attention='none' feeds it every step)

    def repeat(self, k: int) -> Encoded:
        """Each row k times in a row (row b's copies at b·k .. b·k + k - 1), for beam search."""
        rep = lambda t: None if t is None else t.repeat_interleave(k, 0)  # noqa: E731
        return Encoded(rep(self.memory), rep(self.keys), rep(self.mask), rep(self.context))


class Seq2Seq(nn.Module):
    """Source ids -> target ids.

    Args:
        src_vocab, tgt_vocab: vocabulary sizes (id 0 pads; the target's bos / eos ids below).
        encoder, decoder: recurrent layers (`rnnlab.tasks.settings.build_recurrent`); the decoder is
            unidirectional, fed `decoder_input_size(...)` features.
        embedding_dim: E of both embeddings.
        attention: one of ATTENTIONS.
        bos, eos: target ids that start and end a target.
        dropout: on the embeddings and on õ_t.
        tie_embeddings: the output layer V shares the target embedding's weights (õ_t is then E wide).
    """

    def __init__(self, src_vocab: int, tgt_vocab: int, encoder: nn.Module, decoder: nn.Module, embedding_dim: int,
                 attention: str, bos: int, eos: int, dropout: float = 0.0, tie_embeddings: bool = False) -> None:
        super().__init__()
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {attention!r}")
        self.encoder, self.decoder = encoder, decoder
        self.src_embed = nn.Embedding(src_vocab, embedding_dim, padding_idx=PAD_ID)
        self.tgt_embed = nn.Embedding(tgt_vocab, embedding_dim, padding_idx=PAD_ID)
        self.drop = nn.Dropout(dropout)
        self.attention_kind, self.bos, self.eos = attention, bos, eos
        K, H = encoder.output_size, decoder.hidden_size
        if decoder.num_directions != 1:
            raise ValueError("the decoder must be unidirectional (it generates left to right)")
        self.memory_size, self.num_states = K, state_count(decoder)
        self.attention = None if attention == "none" else Attention(attention, H, K)
        self.bridge = nn.Linear(K, decoder.num_layers * H)
        out = embedding_dim if tie_embeddings else H
        self.combine = nn.Linear(H + K, out)  # õ_t = tanh(W_o [s_t; ctx_t])
        self.out = nn.Linear(out, tgt_vocab)
        if tie_embeddings:
            self.out.weight = self.tgt_embed.weight

    @staticmethod
    def decoder_input_size(attention: str, embedding_dim: int, memory_size: int, decoder_hidden: int, tie_embeddings: bool) -> int:
        """What the decoder reads each step: e(y_{t-1}) and õ_{t-1} (luong: E if tied, else H) or ctx (K)."""
        if attention.startswith("luong"):
            return embedding_dim + (embedding_dim if tie_embeddings else decoder_hidden)
        return embedding_dim + memory_size

    # ---- encoder -----------------------------------------------------------------------------

    def encode(self, src: Tensor, src_len: Tensor) -> tuple[Encoded, tuple[Tensor, ...]]:
        """src (B, S) ids, src_len (B,) -> (what the decoder reads, the decoder's initial state)."""
        memory, state = self.encoder(self.drop(self.src_embed(src)), lengths=src_len)
        h = state[0] if isinstance(state, tuple) else state  # (L·D, B, H_enc)
        D = self.encoder.num_directions
        final = torch.cat(list(h[-D:]), 1)  # (B, D·H_enc): the top layer's final state, each direction
        keys = self.attention.keys(memory) if self.attention is not None else None
        encoded = Encoded(memory, keys, length_mask(src_len, memory.size(1)), final)
        L, H = self.decoder.num_layers, self.decoder.hidden_size
        h0 = torch.tanh(self.bridge(final)).view(-1, L, H).transpose(0, 1).contiguous()  # (L, B, H)
        return encoded, (h0, torch.zeros_like(h0))[: self.num_states]

    # ---- one decoder step --------------------------------------------------------------------

    def step(self, y_prev: Tensor, state: tuple[Tensor, ...], feed: Tensor, enc: Encoded) -> tuple[Tensor, tuple[Tensor, ...], Tensor, Tensor | None]:
        """One target position for every row.

        y_prev (B,) ids; state: the decoder's (each (L, B, H)); feed (B, ·): õ_{t-1} (luong) or
        ctx (none), unused by bahdanau. Returns logits (B, V), the new state, the next feed and the
        attention weights (B, S) (None for attention='none').
        """
        emb = self.drop(self.tgt_embed(y_prev))
        weights = None
        if self.attention_kind == "bahdanau":
            ctx, weights = self.attention(state[0][-1], enc.keys, enc.memory, enc.mask)
            inp = torch.cat([emb, ctx], 1)
        else:
            inp = torch.cat([emb, feed], 1)
        out, state = self.decoder(inp[:, None], state if self.num_states == 2 else state[0])
        state = state if isinstance(state, tuple) else (state,)
        s = out[:, 0]
        if self.attention_kind in ("luong_dot", "luong_general"):
            ctx, weights = self.attention(s, enc.keys, enc.memory, enc.mask)
        elif self.attention_kind == "none":
            ctx = enc.context
        o = torch.tanh(self.combine(torch.cat([s, ctx], 1)))
        nxt = o if self.attention_kind.startswith("luong") else ctx
        return self.out(self.drop(o)), state, nxt, weights

    def first_feed(self, enc: Encoded) -> Tensor:
        """The feed of step 1: zeros for luong's õ_0, the context for none (bahdanau ignores it)."""
        if self.attention_kind.startswith("luong"):
            return enc.memory.new_zeros(enc.memory.size(0), self.combine.out_features)
        return enc.context

    # ---- training: teacher forcing -----------------------------------------------------------

    def forward(self, src: Tensor, src_len: Tensor, tgt_in: Tensor, teacher_forcing: float = 1.0) -> tuple[Tensor, Tensor | None]:
        """Logits of every target position: (B, T, V), and the attention weights (B, T, S) (None for
        'none'). tgt_in (B, T) = bos + the target without its eos; position t reads the gold
        y_{t-1} with probability `teacher_forcing` (per row and step), else the model's own argmax."""
        enc, state = self.encode(src, src_len)
        feed, logits, weights = self.first_feed(enc), [], []
        y = tgt_in[:, 0]
        for t in range(tgt_in.size(1)):
            if t > 0:
                y = tgt_in[:, t]
                if teacher_forcing < 1.0:
                    own = self.never_output(logits[-1].detach()).argmax(1)
                    y = torch.where(torch.rand(y.shape, device=y.device) < teacher_forcing, y, own)
            step_logits, state, feed, w = self.step(y, state, feed, enc)
            logits.append(step_logits)
            weights.append(w)
        attn = None if weights[0] is None else torch.stack(weights, 1)
        return torch.stack(logits, 1), attn

    # ---- decoding ----------------------------------------------------------------------------

    def never_output(self, logits: Tensor) -> Tensor:
        """Logits with padding and <bos> made impossible: a decoder may only write tokens and <eos>."""
        logits = logits.clone()
        logits[:, [PAD_ID, self.bos]] = float("-inf")
        return logits

    @torch.no_grad()
    def greedy(self, src: Tensor, src_len: Tensor, max_len: int) -> tuple[list[list[int]], list[Tensor | None]]:
        """The argmax target of every source, up to max_len ids (eos not included), and each one's
        attention weights (T, S_real) (None for 'none')."""
        enc, state = self.encode(src, src_len)
        B = src.size(0)
        feed, y = self.first_feed(enc), src.new_full((B,), self.bos)
        done = torch.zeros(B, dtype=torch.bool, device=src.device)
        out, attn = [], []
        for _ in range(max_len):
            logits, state, feed, w = self.step(y, state, feed, enc)
            y = self.never_output(logits).argmax(1)
            out.append(y)
            attn.append(w)
            done |= y == self.eos
            if bool(done.all()):
                break
        ids = torch.stack(out, 1).tolist()
        results, weights = [], []
        for b in range(B):
            n = ids[b].index(self.eos) if self.eos in ids[b] else len(ids[b])
            results.append(ids[b][:n])
            weights.append(None if attn[0] is None else torch.stack([a[b] for a in attn[: n + 1]])[:, : int(src_len[b])])
        return results, weights

    @torch.no_grad()
    def beam_search(self, src: Tensor, src_len: Tensor, max_len: int, beam: int = 5,
                    length_penalty: float = 0.0) -> list[list[int]]:
        """The best target of every source under beam search, eos not included.

        Hypotheses are ranked by log p / lp, lp = ((5 + n) / 6)^length_penalty (Wu et al. 2016), n
        the ids generated (eos included); one that reaches max_len without eos ends there. Each
        step keeps the best `beam` unfinished hypotheses among the 2·beam best extensions; a source
        is done when `beam` hypotheses have ended and no unfinished one can still beat the worst
        of them (its score can only fall, so it is bounded by score / lp(max_len)).
        """
        enc, state = self.encode(src, src_len)
        B, K = src.size(0), beam
        enc = enc.repeat(K)
        state = tuple(s.repeat_interleave(K, 1) for s in state)
        feed = self.first_feed(enc)
        lp = lambda n: ((5 + n) / 6) ** length_penalty  # noqa: E731
        scores = torch.full((B, K), float("-inf"), device=src.device)
        scores[:, 0] = 0.0  # one live hypothesis per source at the start
        tokens = [[[] for _ in range(K)] for _ in range(B)]
        finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(B)]
        done = [False] * B
        y = src.new_full((B * K,), self.bos)
        for t in range(1, max_len + 1):
            logits, state, feed, _ = self.step(y, state, feed, enc)
            logp = F.log_softmax(self.never_output(logits.float()), 1).view(B, K, -1)
            V = logp.size(2)
            cand = (scores[:, :, None] + logp).view(B, K * V)
            top_scores, top_idx = cand.topk(min(2 * K, K * V), 1)
            new_scores = torch.full((B, K), float("-inf"), device=src.device)
            origin = torch.zeros(B, K, dtype=torch.long, device=src.device)
            next_ids = torch.full((B, K), self.eos, dtype=torch.long, device=src.device)
            new_tokens = [[[] for _ in range(K)] for _ in range(B)]
            for b in range(B):
                if done[b]:
                    continue
                alive = 0
                for score, idx in zip(top_scores[b].tolist(), top_idx[b].tolist()):
                    if score == float("-inf") or alive == K:
                        break
                    k, token = divmod(idx, V)
                    seq = tokens[b][k] + [token]
                    if token == self.eos or t == max_len:
                        finished[b].append((score / lp(t), seq[:-1] if token == self.eos else seq))
                        continue
                    new_scores[b, alive], origin[b, alive], next_ids[b, alive] = score, k, token
                    new_tokens[b][alive] = seq
                    alive += 1
                finished[b].sort(key=lambda h: -h[0])
                best_alive = float(new_scores[b].max())
                if len(finished[b]) >= K and (alive == 0 or best_alive / lp(max_len) < finished[b][K - 1][0]):
                    done[b] = True
                elif alive == 0:
                    done[b] = True
            if all(done):
                break
            scores, tokens = new_scores, new_tokens
            rows = (torch.arange(B, device=src.device)[:, None] * K + origin).view(-1)
            state = tuple(s.index_select(1, rows) for s in state)
            feed = feed.index_select(0, rows)
            y = next_ids.view(-1)
        return [max(f, key=lambda h: h[0])[1] if f else [] for f in finished]


def state_count(layer: nn.Module) -> int:
    """2 where the layer's state is (h, c), else 1 (rnnlab's layers say so; torch.nn's by cell)."""
    return getattr(layer, "num_states", 2 if getattr(layer, "cell", "") == "lstm" else 1)


def max_target_length(src_len: int, a: float, b: int) -> int:
    """The longest target decoded for a source of src_len ids: a·src_len + b (at least 1)."""
    return max(1, math.floor(a * src_len) + b)
