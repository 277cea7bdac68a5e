"""Fetch a public data file once, check its SHA-256, and keep it in the data directory.

Every task names its files as `RemoteFile`s; `fetch` returns the local path, downloading only
when the file is not there yet. The data directory is, in order: the value a config passes,
`$RNNLAB_DATA_DIR`, `./data` (relative to the working directory). Machines without network keep
a copy laid out the same way (`<data_dir>/tinyshakespeare/input.txt`, `<data_dir>/sst2/train.tsv`) and point the variable at it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from rnnlab.utils.errors import UserError

DATA_DIR_ENV = "RNNLAB_DATA_DIR"
DEFAULT_DATA_DIR = "data"


@dataclass(frozen=True)
class RemoteFile:
    """A file on the web and where it lives inside the data directory.

    Args:
        url: where to download it from.
        sha256: hex digest of the expected content; a file that does not match is never used.
        relpath: path inside the data directory, e.g. 'tinyshakespeare/input.txt'.
    """

    url: str
    sha256: str
    relpath: str


TINY_SHAKESPEARE = RemoteFile(
    url="https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
    sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
    relpath="tinyshakespeare/input.txt",
)

# SST-2, the sentence-level binary Stanford Sentiment Treebank: GLUE's train and dev files and the
# labelled test sentences, as TSVs in a public repository, pinned to a commit (the bytes never change).
_SST2_COMMIT = "https://raw.githubusercontent.com/awake020/pytorch_Bert_sst2/54e22ca58a656750f474ec61ebccaf5ff596de96/SST-2"
SST2: dict[str, RemoteFile] = {
    name: RemoteFile(url=f"{_SST2_COMMIT}/{name}.tsv", sha256=sha, relpath=f"sst2/{name}.tsv")
    for name, sha in [
        ("train", "e981ceb4fe6c9acd1c79851d0d091b9e78103f1f2a399ca83dda27915d41c56c"),  # 67,349 sentences and phrases
        ("dev", "84207e6be5873fb18db798cc6faec86871f5a426554650ff64a1c34e87665f6f"),  # 872
        ("test", "fcd46f967b7b8efd8b5398481dadf873886298d092195167af907fd532e81e1c"),  # 1,821
    ]
}

# Multi30k task 1 (Elliott et al. 2016): German-English image captions, raw (cased, untokenised), one
# sentence a line, line i of .de translating line i of .en; 29,000 / 1,014 / 1,000 (test_2016_flickr).
_MULTI30K = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw"
MULTI30K: dict[str, RemoteFile] = {
    name: RemoteFile(url=f"{_MULTI30K}/{name}.gz", sha256=sha, relpath=f"multi30k/{name}.gz")
    for name, sha in [
        ("train.de", "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6"),
        ("train.en", "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f"),
        ("val.de", "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a"),
        ("val.en", "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28"),
        ("test_2016_flickr.de", "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8"),
        ("test_2016_flickr.en", "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9"),
    ]
}


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data directory: `data_dir` if given, else `$RNNLAB_DATA_DIR`, else `./data`."""
    if data_dir is None or str(data_dir) == "":
        data_dir = os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR
    return Path(data_dir).expanduser()


def sha256sum(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def fetch(remote: RemoteFile, data_dir: str | os.PathLike | None = None, timeout: float = 30.0) -> Path:
    """Local path of `remote`, downloaded into the data directory on first use.

    Raises:
        UserError: the cached copy has the wrong checksum, or the file is absent and cannot be
            downloaded (offline); the message says where to put it and names $RNNLAB_DATA_DIR.
    """
    root = resolve_data_dir(data_dir)
    path = root / remote.relpath
    if path.is_file():
        got = sha256sum(path)
        if got != remote.sha256:
            raise UserError(
                f"{path} exists but its SHA-256 is {got}, not the expected {remote.sha256}: the copy is "
                f"corrupt or a different file. Delete it to download it again from {remote.url}, or "
                f"replace it with the original."
            )
        return path
    try:
        _download(remote, path, timeout)
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        raise UserError(
            f"{remote.relpath} is not in the data directory {root.resolve()} and downloading it from "
            f"{remote.url} failed ({e}). Without network, copy the file to {path.resolve()}, or set "
            f"{DATA_DIR_ENV} to a directory that holds {remote.relpath} (e.g. "
            f"{DATA_DIR_ENV}=../shared/data), or pass a data directory in the config (paths.data_dir=...)."
        ) from e
    return path


def _download(remote: RemoteFile, path: Path, timeout: float) -> None:
    # Download beside the target and rename only after the checksum matched, so an interrupted
    # or tampered download never leaves a file that a later run would trust.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(remote.url, timeout=timeout) as resp:
            shutil.copyfileobj(resp, out)
        got = sha256sum(tmp)
        if got != remote.sha256:
            raise UserError(
                f"Downloaded {remote.url} but its SHA-256 is {got}, not the expected {remote.sha256}; "
                f"nothing was saved. The file changed upstream or the download was altered: get a "
                f"verified copy and put it at {path}."
            )
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
