"""Char-LM data: reading and checking files, vocabulary, TBPTT windows, download and cache."""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch

from conftest import SHARED_DATA, make_corpus
from rnnlab.data import download
from rnnlab.data.download import TINY_SHAKESPEARE, RemoteFile, fetch, resolve_data_dir
from rnnlab.tasks.charlm.data import IGNORE_INDEX, UNK, CharLMDataModule, CharVocab, RandomWindows, StreamWindows, read_text
from rnnlab.utils.errors import UserError

# ---- reading files ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such file"),
        (b"", "is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "looks binary"),
        ("caf\u00e9 na\u00efve".encode("latin-1"), "is not UTF-8 text: byte 0xe9 at offset 3"),
    ],
    ids=["missing", "empty", "binary", "latin1"],
)
def test_bad_files_give_a_clear_error(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "corpus.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UserError, match=message) as info:
        read_text(path)
    text = str(info.value)
    assert "task.data.path" in text and str(path) in text and "UTF-8 text file" in text  # names the field and the fix


def test_directory_and_bom(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not a regular file"):
        read_text(tmp_path)
    (tmp_path / "bom.txt").write_bytes("\ufeffhello".encode("utf-8"))
    assert read_text(tmp_path / "bom.txt") == "hello"  # the byte-order mark is not a character of the text


# ---- vocabulary -------------------------------------------------------------------------------


def test_vocab_round_trip_matches_a_dict_lookup() -> None:
    text = "Hello, wörld! ✓ 🙂\n\ttabs"
    vocab = CharVocab.build(text)
    assert vocab.chars == sorted(set(text)) and vocab.unk is None
    ids = vocab.encode(text)
    assert ids.dtype == torch.int64
    assert ids.tolist() == [vocab.stoi[c] for c in text]
    assert vocab.decode(ids) == text


def test_vocab_unk_only_when_val_or_test_need_it() -> None:
    assert UNK not in CharVocab.build("abc", "cab", "b").chars
    vocab = CharVocab.build("abc", "abd", "c")
    assert vocab.chars == ["a", "b", "c", UNK]
    assert vocab.encode("dad").tolist() == [vocab.unk, 0, vocab.unk]


def test_vocab_without_unk_rejects_unknown_characters() -> None:
    vocab = CharVocab(["a", "b"])
    with pytest.raises(UserError, match="characters the vocabulary lacks: 'xz'"):
        vocab.encode("abzx", "prime")


# ---- windows ----------------------------------------------------------------------------------


def test_stream_windows_follow_char_rnn_tbptt() -> None:
    data = torch.arange(100)
    ds = StreamWindows(data, batch_size=3, bptt=5)
    # 99 (input, target) pairs → 3 streams of 33 → 6 full windows of 5 (the 3 extra steps dropped).
    assert len(ds) == 6
    for k in range(len(ds)):
        x, y, reset = ds[k]
        assert x.shape == y.shape == (3, 5)
        assert reset == (k == 0)
        assert torch.equal(y, x + 1)  # the target is the next character
        assert torch.equal(x[:, 0], torch.tensor([0, 33, 66]) + 5 * k)  # stream b starts at b * 33
        if k:  # window k continues window k-1 in every stream: the carried state is the right one
            assert torch.equal(x[:, 0], ds[k - 1][0][:, -1] + 1)
    with pytest.raises(IndexError):
        ds[6]


def test_eval_windows_cover_every_target_once() -> None:
    data = torch.arange(50)
    ds = StreamWindows(data, batch_size=4, bptt=3, cover_all=True)  # 49 pairs → 4 streams of 13, padded
    pairs = []
    for k in range(len(ds)):
        x, y, reset = ds[k]
        assert reset == (k == 0)
        real = y != IGNORE_INDEX
        assert torch.equal(y[real], x[real] + 1)
        pairs += x[real].tolist()
    assert sorted(pairs) == list(range(49))


def test_random_windows_are_shifted_pairs_from_a_zero_state() -> None:
    data = torch.arange(200)
    torch.manual_seed(0)
    ds = RandomWindows(data, batch_size=5, bptt=7, num_batches=3)
    assert len(ds) == 3
    x, y, reset = ds[0]
    assert x.shape == y.shape == (5, 7) and reset is True
    assert torch.equal(y, x + 1) and torch.equal(x[:, 1:], x[:, :-1] + 1)


# ---- data module ------------------------------------------------------------------------------


def test_datamodule_splits_and_vocab_from_training_split(tmp_path: Path) -> None:
    text = "abcd" * 450 + "xyz" * 50  # 'x', 'y', 'z' appear only after the training split
    path = tmp_path / "c.txt"
    path.write_text(text)
    dm = CharLMDataModule(path=str(path), batch_size=4, bptt=8)
    dm.setup("fit")
    n = len(text)
    sizes = [dm.splits[s].numel() for s in ("train", "val", "test")]
    assert sum(sizes) == n and all(abs(size - f * n) <= 1 for size, f in zip(sizes, (0.9, 0.05, 0.05)))
    assert dm.vocab.decode(torch.cat(list(dm.splits.values()))).replace(UNK, "?") == text.replace("x", "?").replace("y", "?").replace("z", "?")
    assert dm.model_kwargs() == {"vocab": ["a", "b", "c", "d", UNK]}
    assert set(dm.splits["val"].tolist()) <= {len(dm.vocab) - 1, *range(4)}
    x, y, reset = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 8) and reset is True
    # Evaluation covers every target of the split: n_val - 1 of them.
    targets = sum(int((b[1] != IGNORE_INDEX).sum()) for b in dm.val_dataloader())
    assert targets == dm.splits["val"].numel() - 1


def test_datamodule_uses_a_given_vocabulary(tmp_path: Path) -> None:
    path = make_corpus(tmp_path / "c.txt")
    vocab = sorted(set(path.read_text())) + ["#"]
    dm = CharLMDataModule(path=str(path), batch_size=2, bptt=4, vocab=vocab)
    dm.setup()
    assert dm.vocab.chars == vocab


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"bptt": 0}, "task.data.bptt=0: must be a positive integer"),
        ({"bptt": -3}, "task.data.bptt=-3"),
        ({"batch_size": 0}, "task.data.batch_size=0"),
        ({"batch_size": 2.5}, "task.data.batch_size=2.5"),
        ({"split": [0.9, 0.2, 0.1]}, "task.data.split"),
        ({"windows": "shuffled"}, "task.data.windows='shuffled'"),
    ],
)
def test_datamodule_rejects_bad_values(kwargs: dict, message: str) -> None:
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("(", r"\(")):
        CharLMDataModule(path="unused.txt", **kwargs)


@pytest.mark.parametrize("windows", ["sequential", "random"])
def test_batch_size_larger_than_the_data_allows(tmp_path: Path, windows: str) -> None:
    path = make_corpus(tmp_path / "c.txt", n_chars=1000)
    batch, bptt = (100, 16) if windows == "sequential" else (4, 950)
    dm = CharLMDataModule(path=str(path), batch_size=batch, bptt=bptt, windows=windows)
    with pytest.raises(UserError, match=r"need at least \d+ training characters.*training split of .* has 900.*Lower task.data.batch_size or task.data.bptt"):
        dm.setup()


def test_text_too_short_for_a_split(tmp_path: Path) -> None:
    (tmp_path / "c.txt").write_text("abcdefghij")
    with pytest.raises(UserError, match="val split .* too small"):
        CharLMDataModule(path=str(tmp_path / "c.txt"), batch_size=1, bptt=2).setup()


# ---- download and cache -----------------------------------------------------------------------


def remote_for(tmp_path: Path, content: bytes, sha: str | None = None) -> RemoteFile:
    src = tmp_path / "upstream.txt"
    src.write_bytes(content)
    return RemoteFile(url=src.as_uri(), sha256=sha or hashlib.sha256(content).hexdigest(), relpath="corpus/input.txt")


def test_fetch_downloads_verifies_and_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    remote = remote_for(tmp_path, b"to be or not to be\n")
    path = fetch(remote, tmp_path / "data")  # a real download through urllib (file:// URL)
    assert path == tmp_path / "data" / "corpus" / "input.txt" and path.read_bytes() == b"to be or not to be\n"
    assert list(path.parent.iterdir()) == [path]  # no .part file left behind

    def offline(*args, **kwargs):
        raise AssertionError("a cached file must not be downloaded again")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    assert fetch(remote, tmp_path / "data") == path


def test_fetch_rejects_a_wrong_checksum(tmp_path: Path) -> None:
    remote = remote_for(tmp_path, b"tampered", sha="0" * 64)
    with pytest.raises(UserError, match="SHA-256 .* not the expected 0{64}; nothing was saved"):
        fetch(remote, tmp_path / "data")
    assert not any((tmp_path / "data").rglob("*.txt*"))
    cached = tmp_path / "data" / remote.relpath
    cached.write_bytes(b"corrupt copy")
    with pytest.raises(UserError, match="corrupt or a different file. Delete it"):
        fetch(remote, tmp_path / "data")


def test_fetch_offline_says_where_to_put_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(UserError) as info:
        fetch(TINY_SHAKESPEARE, tmp_path / "empty")
    text = str(info.value)
    assert "RNNLAB_DATA_DIR" in text and str((tmp_path / "empty" / "tinyshakespeare" / "input.txt").resolve()) in text
    assert "name resolution" in text


def test_data_dir_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(download.DATA_DIR_ENV, raising=False)
    assert resolve_data_dir(None) == Path("data")
    monkeypatch.setenv(download.DATA_DIR_ENV, str(tmp_path))
    assert resolve_data_dir(None) == tmp_path
    assert resolve_data_dir(tmp_path / "explicit") == tmp_path / "explicit"  # the config value wins


@pytest.mark.skipif(not (SHARED_DATA / TINY_SHAKESPEARE.relpath).is_file(), reason="no local copy of tiny Shakespeare")
def test_tiny_shakespeare_from_the_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(download.DATA_DIR_ENV, str(SHARED_DATA))
    dm = CharLMDataModule(batch_size=64, bptt=128)  # path=None: the default corpus, verified by SHA-256
    dm.setup()
    assert len(dm.vocab) == 65 and UNK not in dm.vocab.chars
    assert sum(t.numel() for t in dm.splits.values()) == 1115394
    assert len(dm.train_dataloader()) == (1003855 - 1) // 64 // 128
