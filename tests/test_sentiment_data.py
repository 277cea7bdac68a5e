"""Sentiment data: tokeniser, vocabulary, reading tables and class files, splits, bucketed batches,
SST-2, and every bad input named by file and line."""

from __future__ import annotations

import logging
import random
import urllib.error
from pathlib import Path

import pytest
import torch

from conftest import SHARED_DATA
from rnnlab.data import download
from rnnlab.tasks.sentiment import SentimentDataModule, Vocab, tokenize
from rnnlab.data.batches import BucketBatches
from rnnlab.tasks.sentiment.data import EncodedSplit, padding_share, stratified_split
from rnnlab.data.text import PAD_ID, UNK_ID, pad_batch
from rnnlab.utils.errors import UserError

POSITIVE = ["good", "great", "fun", "gripping", "funny", "superb"]
NEGATIVE = ["bad", "dull", "boring", "awful", "tedious", "clumsy"]
NEUTRAL = ["the", "film", "a", "movie", "plot", "is", "and", "with", "acting", "story", "it"]
SST2 = SHARED_DATA / "sst2"
RT = SHARED_DATA / "rt-polarity"


def make_reviews(n: int = 200, seed: int = 0) -> list[tuple[str, str]]:
    """`n` (sentence, label) pairs: neutral words around one or two words of the label's sentiment,
    punctuation included, lengths 3 to 14 tokens."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        words = rng.sample(NEUTRAL, rng.randint(2, 10)) + rng.sample(POSITIVE if label == "pos" else NEGATIVE, rng.randint(1, 2))
        rng.shuffle(words)
        text = " ".join(words)
        if rng.random() < 0.3:
            text = text.capitalize() + ", really!"
        out.append((text, label))
    return out


def write_csv(path: Path, rows: list[tuple[str, str]], header: str = "text,label") -> Path:
    """A CSV file of `rows` (the text quoted: it may hold commas)."""
    lines = [header] if header else []
    lines += ['"' + text.replace('"', '""') + f'",{label}' for text, label in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_class_files(folder: Path, n: int = 120) -> dict[str, str]:
    """pos.txt and neg.txt, one sentence a line: task.data.files."""
    files = {}
    for label in ("pos", "neg"):
        lines = [text for text, lab in make_reviews(2 * n) if lab == label]
        (folder / f"{label}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        files[label] = str(folder / f"{label}.txt")
    return files


@pytest.fixture
def reviews_csv(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "reviews.csv", make_reviews())


# ---- tokens and vocabulary --------------------------------------------------------------------


def test_tokenize_splits_punctuation_and_clitics_as_sst2_does() -> None:
    assert tokenize("A gripping, funny film!") == ["a", "gripping", ",", "funny", "film", "!"]
    # Raw text and SST-2's pre-tokenised form give the same tokens.
    assert tokenize("It's a film that doesn't work.") == tokenize("it 's a film that does n't work .") == ["it", "'s", "a", "film", "that", "does", "n't", "work", "."]
    assert tokenize("co-writer/director Jackson's") == ["co-writer", "/", "director", "jackson", "'s"]
    assert tokenize("crème brûlée") == ["crème", "brûlée"]
    assert tokenize("Great, film", "whitespace") == ["great,", "film"]
    assert tokenize("Ab c+1", "chars") == ["a", "b", " ", "c", "+", "1"] and tokenize("Ab", "chars", lowercase=False) == ["A", "b"]
    assert tokenize("Great film", lowercase=False) == ["Great", "film"]
    assert tokenize("   ") == [] and tokenize("") == []
    # SST-2's dev and test splits keep the Penn Treebank's escapes; its training split has the characters.
    assert tokenize(r"but -lrb- writer\/director -RRB- is n't *** \* -lsb- x -rcb-") == tokenize("but ( writer/director ) is n't *** * [ x }")
    assert tokenize(r"-lrb- a \/ b", "whitespace") == ["-lrb-", "a", "\\/", "b"]  # whitespace: as written


def test_vocab_from_training_tokens() -> None:
    sentences = [["good", "film"], ["bad", "film"], ["film", "good"], ["rare"]]
    vocab = Vocab.build(sentences)
    assert vocab.words == ["<pad>", "<unk>", "film", "good", "bad", "rare"]  # most frequent first, ties alphabetical
    assert (PAD_ID, UNK_ID) == (0, 1)
    assert Vocab.build(sentences, min_freq=2).words == ["<pad>", "<unk>", "film", "good"]
    assert Vocab.build(sentences, max_size=1).words == ["<pad>", "<unk>", "film"]
    assert vocab.encode(["good", "unseen"]) == [3, UNK_ID]
    assert vocab.decode([3, 1]) == ["good", "<unk>"]


# ---- batches ----------------------------------------------------------------------------------


def test_encoded_split_gathers_padded_batches() -> None:
    sentences = [[5, 6, 7], [8], [9, 10], [11, 12, 13, 14]]
    split = EncodedSplit(sentences, [0, 1, 0, 1])
    batch = split[[2, 0, 1]]
    x, lengths = pad_batch([sentences[i] for i in (2, 0, 1)])
    assert torch.equal(batch.x, x) and torch.equal(batch.lengths, lengths) and batch.y.tolist() == [0, 0, 1]
    assert batch.x.tolist() == [[9, 10, 0], [5, 6, 7], [8, 0, 0]]


def test_bucketed_batches_cover_every_sentence_with_little_padding() -> None:
    torch.manual_seed(0)
    lengths = torch.randint(1, 60, (5000,))
    sampler = BucketBatches(lengths, batch_size=32, shuffle=True, bucket_batches=50)
    batches = sampler.batches()
    assert len(batches) == len(sampler) == 157
    assert sorted(torch.cat(batches).tolist()) == list(range(5000))  # each sentence once an epoch
    assert padding_share(batches, lengths) < 0.05
    random_batches = list(torch.randperm(5000).split(32))
    assert padding_share(random_batches, lengths) > 0.4  # what bucketing saves
    sampler.set_epoch(1)
    assert [b.tolist() for b in sampler.batches()] != [b.tolist() for b in batches]  # a new order each epoch
    torch.rand(1000)  # draws from the global RNG change nothing: the order is (seed, epoch)'s
    sampler.set_epoch(0)
    assert [b.tolist() for b in sampler.batches()] == [b.tolist() for b in batches]
    again = BucketBatches(lengths, batch_size=32, shuffle=True, bucket_batches=50)  # made after other draws
    assert again.seed == sampler.seed == 0 and [b.tolist() for b in again.batches()] == [b.tolist() for b in batches]
    evaluation = BucketBatches(lengths, 100, shuffle=False).batches()
    assert torch.equal(lengths[torch.cat(evaluation)], lengths.sort().values)  # sorted, shortest first


def test_stratified_split_keeps_class_shares_and_depends_on_its_seed_only() -> None:
    names = ["pos"] * 300 + ["neg"] * 100
    train, val, test = stratified_split(names, [0.8, 0.1, 0.1], seed=0)
    assert (len(train), len(val), len(test)) == (320, 40, 40)
    assert sorted(train + val + test) == list(range(400))
    assert [sum(names[i] == "neg" for i in part) for part in (train, val, test)] == [80, 10, 10]
    torch.manual_seed(123)
    random.seed(123)
    assert stratified_split(names, [0.8, 0.1, 0.1], seed=0) == [train, val, test]  # no global RNG involved
    assert stratified_split(names, [0.8, 0.1, 0.1], seed=1) != [train, val, test]


# ---- sources ----------------------------------------------------------------------------------


def test_csv_with_header_and_quoted_commas(reviews_csv: Path) -> None:
    dm = SentimentDataModule(path=str(reviews_csv), batch_size=8)
    dm.setup()
    assert [len(dm.splits[s]) for s in ("train", "val", "test")] == [160, 20, 20]
    kwargs = dm.model_kwargs()
    assert kwargs["labels"] == ["neg", "pos"] and kwargs["vocab"][:2] == ["<pad>", "<unk>"]
    assert {"really", ",", "!"} <= set(kwargs["vocab"])  # the quoted commas are text, not separators
    batch = next(iter(dm.train_dataloader()))
    assert batch.x.shape == (8, int(batch.lengths.max())) and batch.y.shape == (8,)
    # Built again with what the model keeps, the data module encodes the data identically.
    again = SentimentDataModule(path=str(reviews_csv), batch_size=8, vocab=kwargs["vocab"], label_names=kwargs["labels"])
    again.setup()
    assert all(torch.equal(again.splits[s].ids, dm.splits[s].ids) for s in ("train", "val", "test"))


def test_tsv_without_header_by_column_index_and_renamed_labels(tmp_path: Path) -> None:
    rows = [f'{0 if lab == "neg" else 1}\tthe "{text}"' for text, lab in make_reviews(100)]
    (tmp_path / "data.tsv").write_text("\n".join(rows) + "\n")
    dm = SentimentDataModule(path=str(tmp_path / "data.tsv"), header=False, text_column=1, label_column=0, labels={1: "positive", 0: "negative"})
    dm.setup()
    assert dm.model_kwargs()["labels"] == ["positive", "negative"]  # the declared order is the id order
    assert '"' in dm.vocab.stoi  # a tab-separated file has no quoting: quotes are text


def test_numeric_labels_in_numeric_order(tmp_path: Path) -> None:
    rows = [(text, str([2, 10][i % 2])) for i, (text, _) in enumerate(make_reviews(60))]
    dm = SentimentDataModule(path=str(write_csv(tmp_path / "d.csv", rows)))
    dm.setup()
    assert dm.label_names == ["2", "10"]


def test_split_files_keep_their_split_and_carve_a_missing_one(tmp_path: Path) -> None:
    train = write_csv(tmp_path / "train.csv", make_reviews(100, seed=1))
    test = write_csv(tmp_path / "test.csv", make_reviews(30, seed=2))
    dm = SentimentDataModule(path={"train": str(train), "test": str(test)}, split=[0.7, 0.2, 0.1])
    dm.setup()
    assert [len(dm.splits[s]) for s in ("train", "val", "test")] == [80, 20, 30]  # val: 0.2 of train


def test_one_file_per_class(tmp_path: Path) -> None:
    files = write_class_files(tmp_path)
    dm = SentimentDataModule(files=files)
    dm.setup()
    assert dm.model_kwargs()["labels"] == ["pos", "neg"]  # the files' order
    assert [len(dm.splits[s]) for s in ("train", "val", "test")] == [192, 24, 24]
    assert [int((dm.splits[s].labels == 0).sum()) for s in ("train", "val", "test")] == [96, 12, 12]  # stratified


@pytest.mark.skipif(not (RT / "rt-polarity.pos").is_file(), reason="no local copy of rt-polarity")
def test_real_class_files_rt_polarity() -> None:
    dm = SentimentDataModule(files={"positive": str(RT / "rt-polarity.pos"), "negative": str(RT / "rt-polarity.neg")}, split=[0.8, 0.1, 0.1])
    dm.setup()
    sizes = [len(dm.splits[s]) for s in ("train", "val", "test")]
    assert sum(sizes) == 10662 and sizes[1] == sizes[2] == 1066
    assert dm.label_names == ["positive", "negative"]


@pytest.mark.slow
@pytest.mark.skipif(not (SST2 / "train.tsv").is_file(), reason="no local copy of SST-2")
def test_sst2_by_default() -> None:
    dm = SentimentDataModule(data_dir=str(SHARED_DATA))
    dm.setup()
    assert [len(dm.splits[s]) for s in ("train", "val", "test")] == [67349, 872, 1821]
    assert dm.label_names == ["negative", "positive"]
    assert int(dm.splits["train"].labels.sum()) == 37569  # positives in the training file
    assert 14000 < len(dm.vocab) < 16000
    assert padding_share(BucketBatches(dm.splits["train"].lengths, 64, True).batches(), dm.splits["train"].lengths) < 0.1


def test_sst2_offline_without_a_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(download.urllib.request, "urlopen", offline)
    with pytest.raises(UserError, match=r"sst2/train.tsv is not in the data directory .* RNNLAB_DATA_DIR"):
        SentimentDataModule(data_dir=str(tmp_path)).setup()
    assert download.SST2["dev"].relpath == "sst2/dev.tsv" and all(len(f.sha256) == 64 for f in download.SST2.values())


# ---- bad inputs: each names the file and the line ---------------------------------------------


def bad_source(tmp_path: Path, case: str) -> dict:
    """SentimentDataModule arguments that read a broken file of kind `case`."""
    good = write_csv(tmp_path / "good.csv", make_reviews(40))
    lines = good.read_text().splitlines()
    path = tmp_path / "bad.csv"
    if case == "unknown-label":
        lines[5] = '"a good film",neutral'
        path.write_text("\n".join(lines))
        return {"path": str(path), "labels": ["neg", "pos"]}
    if case == "empty":
        path.write_text("")
        return {"path": str(path)}
    if case == "header-only":
        path.write_text("text,label\n")
        return {"path": str(path)}
    if case == "missing-column":
        return {"path": str(good), "text_column": "review"}
    if case == "short-row":
        lines[7] = '"just text, no label"'
        path.write_text("\n".join(lines))
        return {"path": str(path)}
    if case == "no-tokens":
        lines[3] = '"   ",pos'
        path.write_text("\n".join(lines))
        return {"path": str(path)}
    if case == "not-utf8":
        path.write_bytes("\n".join(lines[:4]).encode() + "\n\"caf\u00e9 film\",pos\n".encode("latin-1"))
        return {"path": str(path)}
    if case == "missing-class-file":
        files = write_class_files(tmp_path, 20)
        return {"files": {**files, "neg": str(tmp_path / "nope.txt")}}
    if case == "one-class":
        files = write_class_files(tmp_path, 20)
        return {"files": {"pos": files["pos"]}}
    raise ValueError(case)


BAD = {
    "unknown-label": r"bad.csv, line 6: label 'neutral' is not one of the declared labels \['neg', 'pos'\]",
    "empty": r"task.data.path=.*bad.csv is empty",
    "header-only": r"bad.csv has a header but no examples",
    "missing-column": r"good.csv, line 1: the header has no column 'review' \(task.data.text_column\); its columns are \['text', 'label'\]",
    "short-row": r"bad.csv, line 8: 1 field\(s\) separated by ',', but the label is in column 1 .* the column is missing",
    "no-tokens": r"bad.csv, line 4: the text has no tokens .* task.data.empty_lines=skip",
    "not-utf8": r"bad.csv is not UTF-8 text: line 5 holds byte 0xe9",
    "missing-class-file": r"task.data.files.neg=.*nope.txt: no such file",
    "one-class": r"pos.txt: every training example has the label 'pos'; a classifier needs at least two classes",
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_data_names_file_and_line(tmp_path: Path, case: str) -> None:
    with pytest.raises(UserError, match=BAD[case]):
        SentimentDataModule(**bad_source(tmp_path, case)).setup()


def test_lines_without_tokens_can_be_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rows = make_reviews(40)
    rows[3] = ("  ", "pos")
    rows[9] = ("", "neg")
    path = write_csv(tmp_path / "d.csv", rows)
    with caplog.at_level(logging.WARNING):
        dm = SentimentDataModule(path=str(path), empty_lines="skip")
        dm.setup()
    assert sum(len(dm.splits[s]) for s in ("train", "val", "test")) == 38
    assert "skipped 2 line(s) with no tokens (task.data.empty_lines=skip): " in caplog.text and "d.csv, line 5" in caplog.text


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"batch_size": 0}, r"task.data.batch_size=0: must be a positive integer"),
        ({"split": [0.9, 0.2, 0.1]}, r"task.data.split=\[0.9, 0.2, 0.1\]: give three positive fractions"),
        ({"tokenizer": "bpe"}, r"task.data.tokenizer='bpe': choose one of \('words', 'whitespace', 'chars'\)"),
        ({"empty_lines": "drop"}, r"task.data.empty_lines='drop': choose one of \('error', 'skip'\)"),
        ({"path": "a.csv", "files": {"pos": "p.txt"}}, r"task.data.path and task.data.files are both set"),
        ({"path": {"training": "a.csv"}}, r"names its files by split: train \(required\), val, test"),
        ({"labels": ["pos"]}, r"task.data.labels=\['pos'\]: give at least two labels"),
    ],
)
def test_bad_data_options(kwargs: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        SentimentDataModule(**kwargs)


def test_header_name_without_header(reviews_csv: Path) -> None:
    with pytest.raises(UserError, match=r"task.data.text_column='text' names a column, but task.data.header=false"):
        SentimentDataModule(path=str(reviews_csv), header=False).setup()


def test_orders_give_each_member_its_own_shuffle(reviews_csv: Path) -> None:
    """task.data.orders=3: each step holds 3 batches; over an epoch each order covers every
    training sentence once, the orders differ, and the first equals the one-order loader's sequence
    shifted to its own seed (base + k)."""
    torch.manual_seed(11)
    dm = SentimentDataModule(path=str(reviews_csv), batch_size=8, orders=3)
    dm.setup()
    steps = list(dm.train_dataloader())
    assert len(steps) == 20 and all(isinstance(step, (tuple, list)) and len(step) == 3 for step in steps)
    train = dm.splits["train"]
    seen = []
    for k in range(3):
        rows = torch.cat([step[k].x[:, :1] for step in steps])  # the first word stands for the sentence
        assert rows.shape[0] == len(train)
        ys = torch.cat([step[k].y for step in steps])
        assert torch.equal(ys.sort().values, train.labels.sort().values)  # every sentence once
        seen.append(ys)
    assert not torch.equal(seen[0], seen[1]) or not torch.equal(seen[1], seen[2])
    torch.manual_seed(11)
    one = SentimentDataModule(path=str(reviews_csv), batch_size=8)
    one.setup()
    torch.manual_seed(11)
    first = [b.y for b in one.train_dataloader()]
    assert all(torch.equal(a, step[0].y) for a, step in zip(first, steps))  # order 0 is the plain loader's
