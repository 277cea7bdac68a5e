"""Labelled sentences from files: a CSV/TSV table, one file per class, or SST-2.

Every reader returns `Example`s that remember their file and line, so that any later complaint
(an unknown label, a line with no words) can say where to look. Each bad input is a `UserError`
that names the file, the line and the fix; nothing is read past the first one.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from rnnlab.data.files import read_lines
from rnnlab.utils.errors import UserError

# SST-2 as the GLUE files write it: label (0/1), then the sentence; a header on every file.
SST2_LABELS = {"0": "negative", "1": "positive"}


@dataclass(frozen=True)
class Example:
    """One labelled sentence and where it was read (for error messages)."""

    text: str
    label: str  # the label as the file writes it (mapped to a name later)
    path: str
    line: int  # 1-based

    @property
    def where(self) -> str:
        return f"{self.path}, line {self.line}"


def _delimiter(path: Path, first_line: str, delimiter: str | None) -> str:
    """The given delimiter, or the file's: a tab for .tsv / .tab or a tab in the first line, else a comma."""
    if delimiter is not None:
        return delimiter
    if path.suffix.lower() in (".tsv", ".tab") or (path.suffix.lower() != ".csv" and "\t" in first_line):
        return "\t"
    return ","


def _column_index(column: str | int, names: Sequence[str] | None, path: Path, key: str) -> int:
    """The 0-based index of `column` (an index, or a header name when `names` are given)."""
    if isinstance(column, bool) or not isinstance(column, (int, str)):
        raise UserError(f"task.data.{key}={column!r}: give a column name (with a header) or a 0-based index.")
    if isinstance(column, int):
        if column < 0:
            raise UserError(f"task.data.{key}={column}: a column index counts from 0.")
        return column
    if names is None:
        raise UserError(
            f"task.data.{key}={column!r} names a column, but task.data.header=false says {path} has no header "
            f"line: give the column's 0-based index instead (e.g. task.data.{key}=1), or set task.data.header=true."
        )
    if column not in names:
        raise UserError(
            f"{path}, line 1: the header has no column {column!r} (task.data.{key}); its columns are "
            f"{list(names)}. Set task.data.{key} to one of them (or to a 0-based index)."
        )
    return list(names).index(column)


def read_table(
    path: str | os.PathLike,
    text_column: str | int = "text",
    label_column: str | int = "label",
    header: bool = True,
    delimiter: str | None = None,
    field: str = "task.data.path",
) -> list[Example]:
    """The rows of a CSV/TSV file as Examples (a blank row: an Example with empty text).

    Tab-separated files are read without quoting (a `"` is part of the text, as in SST-2); comma-
    separated ones with CSV quoting, so a quoted field may hold commas.
    """
    path = Path(path)
    lines = read_lines(path, field)
    sep = _delimiter(path, lines[0], delimiter)
    quoting = csv.QUOTE_NONE if sep == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(lines, delimiter=sep, quoting=quoting)
    names = None
    if header:
        names = [n.strip() for n in next(reader)]
    text_at = _column_index(text_column, names, path, "text_column")
    label_at = _column_index(label_column, names, path, "label_column")
    need = max(text_at, label_at) + 1
    examples = []
    try:
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):  # a blank line: no text (the caller's policy decides)
                examples.append(Example("", "", str(path), line))
                continue
            if len(row) < need:
                missing = "text" if len(row) <= text_at else "label"
                raise UserError(
                    f"{path}, line {line}: {len(row)} field(s) separated by {sep!r}, but the {missing} is in column "
                    f"{text_at if missing == 'text' else label_at} (0-based): the column is missing. Fix the line, or "
                    f"set task.data.text_column / label_column / delimiter to match the file."
                )
            examples.append(Example(row[text_at], row[label_at].strip(), str(path), line))
    except csv.Error as e:
        raise UserError(f"{path}, line {reader.line_num}: not valid CSV ({e}). Fix the line, or set task.data.delimiter.") from e
    if not examples:
        raise UserError(f"{path} has a header but no examples. Give a file with one labelled example a line.")
    return examples


def read_class_files(files: Mapping[str, str], field: str = "task.data.files") -> list[Example]:
    """One example a line from each file, labelled with the file's key: {label: path}."""
    if not isinstance(files, Mapping) or not files:
        raise UserError(f"{field}={files!r}: give one file per class as a mapping, e.g. {field}={{pos: pos.txt, neg: neg.txt}}.")
    examples = []
    for label, path in files.items():
        if not isinstance(path, (str, os.PathLike)):
            raise UserError(f"{field}.{label}={path!r}: give the path of a text file with one example of class {label!r} a line.")
        lines = read_lines(path, f"{field}.{label}")
        examples += [Example(text, str(label), str(path), i + 1) for i, text in enumerate(lines)]
    return examples


def label_mapping(labels: Sequence[object] | Mapping[object, object] | None) -> dict[str, str] | None:
    """task.data.labels as {label as the data writes it: its name}; None: take what the data has.

    A list declares the labels (also their id order); a mapping also renames them ({0: negative})."""
    if labels is None:
        return None
    if isinstance(labels, Mapping):
        out = {str(k): str(v) for k, v in labels.items()}
    elif isinstance(labels, Sequence) and not isinstance(labels, str):
        out = {str(v): str(v) for v in labels}
    else:
        raise UserError(f"task.data.labels={labels!r}: give a list of labels ([neg, pos]) or a mapping to names ({{0: negative, 1: positive}}).")
    if len(set(out.values())) != len(out) or len(out) < 2:
        raise UserError(f"task.data.labels={labels!r}: give at least two labels, with distinct names.")
    return out


def ordered_labels(raw: Sequence[str]) -> list[str]:
    """Distinct labels in a stable order: numeric order when all are integers ('2' before '10'), else sorted."""
    distinct = set(raw)
    try:
        return sorted(distinct, key=int)
    except ValueError:
        return sorted(distinct)
