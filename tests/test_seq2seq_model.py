"""Seq2seq pieces without Lightning: the synthetic generators, the codecs, attention masks, padding
invariance, and greedy and beam search against a brute-force search on a tiny model."""

from __future__ import annotations

import datetime as dt
import itertools
import pytest
import torch
import torch.nn.functional as F

from rnnlab.data.text import PAD_ID
from rnnlab.tasks.seq2seq.data import BOS_ID, EOS_ID, SPECIALS, Codec, build_words, bpe_words, train_bpe
from rnnlab.tasks.seq2seq.model import ATTENTIONS, Seq2Seq
from rnnlab.tasks.seq2seq.synthetic import generate, split_pairs
from rnnlab.tasks.settings import build_recurrent


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


# ---------------------------------------------------------------- data


@pytest.mark.parametrize("task", ["reverse", "sort", "addition", "dates"])
def test_generators_are_deterministic_distinct_and_right(task: str) -> None:
    pairs = generate(task, 300, seed=3)
    assert pairs == generate(task, 300, seed=3) and pairs != generate(task, 300, seed=4)
    assert len({s for s, _ in pairs}) == 300
    for src, tgt in pairs:
        if task == "reverse":
            assert tgt == src[::-1] and 1 <= len(src) <= 20
        elif task == "sort":
            assert tgt == "".join(sorted(src)) and 1 <= len(src) <= 10
        elif task == "addition":
            a, b = src.split("+")
            assert int(tgt) == int(a) + int(b) and max(len(a), len(b)) <= 5
        else:
            day = dt.date.fromisoformat(tgt)
            assert str(day.year) in src or f"{day.year % 100:02d}" in src
    train, val, test = split_pairs(task, (200, 50, 50), seed=3)
    sources = [{s for s, _ in part} for part in (train, val, test)]
    assert all(not (a & b) for a, b in itertools.combinations(sources, 2))  # no test pair is trained on


def test_lengths_are_configurable_and_impossible_sizes_are_refused() -> None:
    assert all(3 <= len(s) <= 4 for s, _ in generate("reverse", 50, 0, min_len=3, max_len=4))
    with pytest.raises(ValueError, match="fewer than 500 distinct pairs"):
        generate("addition", 500, 0, min_len=1, max_len=1)  # one digit each: 10 x 10 sources at most


def test_codecs_read_and_write_text_back() -> None:
    words = Codec("words", True, build_words([["a", "dog", ",", "running", "'s", "."]], 1, None))
    assert words.tokens("A dog, running's.") == ["a", "dog", ",", "running", "'s", "."]
    assert words.decode(words.encode("A dog, running's.")) == "a dog, running's."
    assert words.vocab.words[:4] == SPECIALS and words.encode("a cat")[1] == 1  # <unk>
    chars = Codec("chars", False, build_words([list("ab+1")], 1, None))
    assert chars.decode(chars.encode("ab+1") + [EOS_ID, PAD_ID]) == "ab+1"
    texts = ["zwei hunde spielen im schnee.", "ein mann fährt fahrrad, schnell!", "two dogs play in the snow."]
    bpe = train_bpe(texts * 5, 60)
    codec = Codec("bpe", True, bpe_words(bpe), bpe)
    assert codec.vocab.words[:4] == SPECIALS
    for text in texts:
        assert codec.decode(codec.encode(text)) == text  # subwords detokenise exactly
    backwards = Codec("bpe", True, bpe_words(bpe), bpe, reverse=True)
    for text in texts:
        assert backwards.encode(text) == codec.encode(text)[::-1] and backwards.decode(backwards.encode(text)) == text
    sums = Codec("chars", False, build_words([list("0123456789")], 1, None), reverse=True)
    assert sums.vocab.decode(sums.encode("168")) == ["8", "6", "1"]  # the lowest digit first
    assert sums.decode(sums.encode("168") + [EOS_ID, PAD_ID]) == "168"


def test_reverse_target_reaches_the_data_the_module_and_the_checkpoint() -> None:
    from rnnlab.tasks.seq2seq import Seq2SeqDataModule, Seq2SeqModule

    dm = Seq2SeqDataModule("addition", sizes=[50, 10, 10], reverse_target=True)
    dm.setup()
    plain = Seq2SeqDataModule("addition", sizes=[50, 10, 10])
    plain.setup()
    train, straight = dm.splits["train"], plain.splits["train"]
    assert train.src == straight.src and train.tgt == [t[::-1] for t in straight.tgt]
    assert all(dm.target.decode(t) == p.target for t, p in zip(train.tgt, train.texts))
    module = Seq2SeqModule(model={"layer": "rnnlab", "cell": "gru", "hidden_size": 8}, embedding_dim=4, **dm.model_kwargs())
    assert module.target.reverse and module.datamodule_kwargs()["codecs"]["reverse_target"] is True
    again = Seq2SeqDataModule("addition", sizes=[50, 10, 10], **module.datamodule_kwargs())  # eval / predict: as trained
    again.setup()
    assert again.splits["test"].tgt == dm.splits["test"].tgt


# ---------------------------------------------------------------- model


def tiny(attention: str, cell: str = "gru", layer: str = "rnnlab", bidirectional: bool = True, tie: bool = False,
         vocab: tuple[int, int] = (9, 7), hidden: int = 6, layers: int = 2) -> Seq2Seq:
    E = 5
    enc = build_recurrent({"layer": layer, "cell": cell, "hidden_size": hidden, "num_layers": layers, "bidirectional": bidirectional}, E)
    dec_in = Seq2Seq.decoder_input_size(attention, E, enc.output_size, 7, tie)
    dec = build_recurrent({"layer": layer, "cell": cell, "hidden_size": 7, "num_layers": layers}, dec_in)
    return Seq2Seq(*vocab, enc, dec, E, attention, bos=BOS_ID, eos=EOS_ID, tie_embeddings=tie)


MODELS = [pytest.param(dict(attention=a, cell=c, layer=lay, tie=t), id=f"{a}-{lay}_{c}{'-tied' if t else ''}")
          for a in ATTENTIONS for c, lay, t in [("gru", "rnnlab", False), ("lstm", "torch", True)]]


@pytest.mark.parametrize("kwargs", MODELS)
def test_padding_is_never_attended_and_never_changes_an_output(kwargs: dict) -> None:
    torch.manual_seed(0)
    model = tiny(**kwargs).double().eval()
    src = torch.tensor([[4, 5, 6, 7, 8], [5, 6, PAD_ID, PAD_ID, PAD_ID]])
    src_len = torch.tensor([5, 2])
    tgt_in = torch.tensor([[BOS_ID, 4, 5, 6], [BOS_ID, 6, 5, PAD_ID]])
    logits, attn = model(src, src_len, tgt_in)
    alone, attn_alone = model(src[1:, :2], src_len[1:], tgt_in[1:, :3])
    torch.testing.assert_close(logits[1, :3], alone[0], atol=1e-12, rtol=0)
    if attn is not None:
        assert torch.equal(attn[1, :, 2:], torch.zeros(4, 3))  # padded positions get weight 0 exactly
        torch.testing.assert_close(attn.sum(2), torch.ones(2, 4, dtype=torch.float64))
        torch.testing.assert_close(attn[1, :3, :2], attn_alone[0], atol=1e-12, rtol=0)
    assert model.greedy(src[1:, :2], src_len[1:], 6)[0] == [model.greedy(src, src_len, 6)[0][1]]


def sequence_logprob(model: Seq2Seq, src: torch.Tensor, src_len: torch.Tensor, seq: list[int]) -> float:
    """log p(seq | src) under teacher forcing, with the decoder's forbidden ids masked as decoding does."""
    tgt_in = torch.tensor([[BOS_ID, *seq[:-1]]]) if seq else torch.tensor([[BOS_ID]])
    logits, _ = model(src, src_len, tgt_in)
    logp = F.log_softmax(model.never_output(logits[0]), 1)
    return float(sum(logp[t, y] for t, y in enumerate(seq)))


@pytest.mark.parametrize("kwargs", [MODELS[2], MODELS[5]], ids=["bahdanau", "luong_dot-torch"])
def test_greedy_takes_the_argmax_at_every_step(kwargs: dict) -> None:
    torch.manual_seed(1)
    model = tiny(**kwargs).double().eval()
    src, src_len = torch.tensor([[4, 8, 5, 6]]), torch.tensor([4])
    out = model.greedy(src, src_len, 7)[0][0]
    prefix: list[int] = []
    for _ in range(7):  # brute force: the next id is the argmax given the decoded prefix
        logits, _ = model(src, src_len, torch.tensor([[BOS_ID, *prefix]]))
        nxt = int(model.never_output(logits[0])[-1].argmax())
        if nxt == EOS_ID:
            break
        prefix.append(nxt)
    assert out == prefix


@pytest.mark.parametrize("kwargs, seed, scale", [(MODELS[0], 0, 1.5), (MODELS[2], 1, 1.5), (MODELS[7], 0, 2.0)],
                         ids=["none", "bahdanau", "luong_general-torch"])
def test_beam_search_finds_what_exhaustive_search_finds(kwargs, seed: int, scale: float) -> None:
    """A beam as wide as every hypothesis finds the best sequence of all (each scored by teacher
    forcing, log p / lp), at three length penalties; beam 1 without one is greedy. The tiny models
    are chosen so that the best sequence is not always the greedy one."""
    torch.manual_seed(seed)
    model = tiny(**kwargs.values[0]).double().eval()  # target: 4 specials + 3 tokens
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(scale)  # sharper distributions
    src, src_len = torch.tensor([[4, 8, 5]]), torch.tensor([3])
    L, tokens = 3, [1, 4, 5, 6]  # <unk> may be written too
    candidates = [list(c) + [EOS_ID] for n in range(L) for c in itertools.product(tokens, repeat=n)]
    candidates += [list(c) for c in itertools.product(tokens, repeat=L)]  # reached max_len without eos
    with torch.no_grad():
        logprob = {tuple(c): sequence_logprob(model, src, src_len, c) for c in candidates}
    greedy = model.greedy(src, src_len, L)[0]
    found = []
    for alpha in (0.0, 0.6, 2.0):
        best = max(candidates, key=lambda c: logprob[tuple(c)] / ((5 + len(c)) / 6) ** alpha)
        best = best[:-1] if best[-1] == EOS_ID else best
        assert model.beam_search(src, src_len, L, beam=len(candidates), length_penalty=alpha) == [best]
        found.append(best)
    assert any([f] != greedy for f in found)  # the search found something greedy does not
    assert model.beam_search(src, src_len, L, beam=1) == greedy


def test_batched_beam_search_equals_one_source_at_a_time() -> None:
    torch.manual_seed(3)
    model = tiny("luong_general").double().eval()
    src = torch.tensor([[4, 5, 6, 7], [8, 5, PAD_ID, PAD_ID], [6, PAD_ID, PAD_ID, PAD_ID]])
    src_len = torch.tensor([4, 2, 1])
    together = model.beam_search(src, src_len, 6, beam=4, length_penalty=0.6)
    alone = [model.beam_search(src[i : i + 1, : int(n)], src_len[i : i + 1], 6, beam=4, length_penalty=0.6)[0] for i, n in enumerate(src_len)]
    assert together == alone


def test_teacher_forcing_ratio_zero_feeds_the_models_own_argmax() -> None:
    torch.manual_seed(4)
    model = tiny("bahdanau").double().eval()
    src, src_len = torch.tensor([[4, 5, 6]]), torch.tensor([3])
    out = model.greedy(src, src_len, 5)[0][0]
    tgt_in = torch.tensor([[BOS_ID, 1, 1, 1, 1]])  # wrong gold ids: ignored at ratio 0
    logits, _ = model(src, src_len, tgt_in, teacher_forcing=0.0)
    free = [int(i) for i in model.never_output(logits[0]).argmax(1)]
    n = min(len(out), 5)
    assert free[:n] == out[:n] and (len(out) >= 5 or free[len(out)] == EOS_ID)
    forced, _ = model(src, src_len, tgt_in, teacher_forcing=1.0)
    assert not torch.equal(forced[0, 1:], logits[0, 1:])  # ratio 1 reads the (wrong) gold ids instead
