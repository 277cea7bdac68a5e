"""Reading the text files tasks are given, with errors that name the file, the line and the fix."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

from rnnlab.utils.errors import UserError


def read_lines(path: str | os.PathLike, field: str) -> list[str]:
    """The lines of a UTF-8 text file (without line breaks), or a UserError naming `field`.

    A `.gz` file is decompressed first. Refused: a missing file, a directory, a binary file (NUL
    bytes), a non-UTF-8 file (the error gives the line and byte), an empty file.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{field}={path}: no such file (looked for {path.resolve()}). Point {field} at a UTF-8 text file.")
    if not path.is_file():
        raise UserError(f"{field}={path} is not a regular file. Point {field} at a UTF-8 text file.")
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise UserError(f"{field}={path} is not a readable gzip file ({e}). Give the .gz file whole, or the text itself.") from e
    if b"\x00" in raw:  # valid UTF-8 may hold NUL, but no text file does: it is binary
        line = raw[: raw.index(0)].count(b"\n") + 1
        raise UserError(f"{field}={path} looks binary (a NUL byte on line {line}). Point {field} at a UTF-8 text file.")
    try:
        text = raw.decode("utf-8-sig")  # -sig drops a leading byte-order mark
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise UserError(
            f"{field}={path} is not UTF-8 text: line {line} holds byte 0x{raw[e.start]:02x} (offset {e.start}), which "
            f"cannot be decoded ({e.reason}). Convert the file first, e.g. `iconv -f latin1 -t utf-8 {path.name}`."
        ) from e
    if not text.strip():
        raise UserError(f"{field}={path} is empty. Give a file with one labelled example a line.")
    return text.splitlines()
