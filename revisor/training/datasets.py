"""Loading review-to-revision datasets into `Example`s.

Two formats: the CodeReviewer refinement JSONL (`old`/`new` as diff hunks whose first
character per line is a diff marker, `review`) and the Tufano et al. CSV (`comment`,
`before`, `after`). A malformed row is an error naming file, line and field, or, with
`skip_malformed`, is counted in `Dataset.skipped`; nothing is dropped silently.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.metadata
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from revisor.model.errors import DatasetError
from revisor.model.schema import Example

# Stored predictions of published systems, by the name they get in benchmark reports.
PEER_FIELDS = {"model_code": "codereviewer", "gpt_code": "chatgpt"}


@dataclass
class Dataset:
    path: Path
    examples: list[Example]
    skipped: list[str] = field(default_factory=list)


def file_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def readable_path(path: str | Path) -> str:
    """A path as a reader of shipped metadata can follow it: relative to the working directory
    when it lies beneath it, else its file name; never a machine's home or checkout."""
    given = Path(path)
    if not given.is_absolute():
        return given.as_posix()
    try:
        return given.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return given.name


def provenance(path: str | Path, rows: int) -> dict:
    """What names a data file in metadata: its readable path, row count and sha256."""
    return {"path": readable_path(path), "rows": rows, "sha256": file_digest(path)}


def revisor_version() -> str:
    return importlib.metadata.version("revisor")


def strip_diff_markers(hunk: str) -> str:
    """The code in a diff-marked hunk: every line without its first (marker) character."""
    return "\n".join(line[1:] for line in hunk.split("\n"))


def load_dataset(path: str | Path, *, skip_malformed: bool = False) -> Dataset:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"dataset {path} not found: pass a CodeReviewer .jsonl or Tufano .csv")
    formats = {".jsonl": (_jsonl_rows, _codereviewer_example), ".csv": (_csv_rows, _tufano_example)}
    if path.suffix not in formats:
        raise DatasetError(f"{path}: unknown format; expected .jsonl (CodeReviewer) or .csv (Tufano)")
    read_rows, parse = formats[path.suffix]
    dataset = Dataset(path, [])
    try:
        for line, row in read_rows(path):
            try:
                dataset.examples.append(parse(row, line))
            except DatasetError as error:
                if not skip_malformed:
                    raise DatasetError(f"{path}:{line}: {error} (or pass --skip-malformed)") from None
                dataset.skipped.append(f"{path}:{line}: {error}")
    except UnicodeDecodeError as error:
        raise DatasetError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    return dataset


def codereviewer_record(example: Example) -> dict:
    """The CodeReviewer JSONL form `load_dataset` reads back, every line marked as context (' ')."""
    def hunk(code: str) -> str:
        return "\n".join(" " + line for line in code.split("\n"))

    record = {"_id": example.id, "old": hunk(example.code_before), "new": hunk(example.code_after),
              "review": example.comment, "language": example.language}
    return record | ({"created_at": example.created_at} if example.created_at else {})


def _text(record: dict, name: str) -> str:
    if record.get(name) is None:
        raise DatasetError(f"missing field {name!r}")
    if not isinstance(record[name], str):
        raise DatasetError(f"field {name!r} is not text")
    return record[name]


def _jsonl_rows(path: Path) -> Iterator[tuple[int, str]]:
    with path.open(encoding="utf-8") as lines:
        for number, raw in enumerate(lines, start=1):
            if raw.strip():
                yield number, raw


def _codereviewer_example(raw: str, line: int) -> Example:
    try:
        record = json.loads(raw)
    except json.JSONDecodeError as error:
        raise DatasetError(f"not valid JSON ({error.msg})") from None
    if not isinstance(record, dict):
        raise DatasetError("not a JSON object")
    peers = {name: record[key] for key, name in PEER_FIELDS.items() if isinstance(record.get(key), str)}
    return Example(
        id=str(record.get("_id", line)),
        code_before=strip_diff_markers(_text(record, "old")),
        comment=_text(record, "review"),
        code_after=strip_diff_markers(_text(record, "new")),
        language=str(record.get("language") or ""),
        peers=peers,
        created_at=str(record.get("created_at") or ""),
    )


def _csv_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    csv.field_size_limit(sys.maxsize)
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"comment", "before", "after"} - set(reader.fieldnames or ())
        if missing:
            raise DatasetError(f"{path}:1: missing column(s) {', '.join(sorted(missing))}")
        for record in reader:
            yield reader.line_num, record


def _tufano_example(record: dict[str, str], line: int) -> Example:
    return Example(
        id=str(record.get("") or line),
        code_before=_text(record, "before"),
        comment=_text(record, "comment"),
        code_after=_text(record, "after"),
        language="java",
    )
