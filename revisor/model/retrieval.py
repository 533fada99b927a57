"""BM25 retrieval of few-shot demonstrations over code + comment, with a cached index."""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from revisor.model.schema import Example, RevisionTask

_WORD = re.compile(r"[A-Za-z]+|\d+")


def tokenize(text: str) -> list[str]:
    """Words of code and prose, lower-cased; identifiers split at case and underscores."""
    words = []
    for token in _WORD.findall(text):
        words.extend(part.lower() for part in re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+", token))
    return words or ["<empty>"]


def _document(code: str, comment: str) -> list[str]:
    return tokenize(code + "\n" + comment)


def pool_fingerprint(examples: Sequence[Example]) -> str:
    digest = hashlib.sha256()
    for example in examples:
        digest.update(f"{example.code_before}\0{example.comment}\0".encode())
    return digest.hexdigest()[:16]


class BM25Retriever:
    """Top-k pool examples for a task, never the task itself (same code and comment)."""

    def __init__(self, pool: Sequence[Example], cache_dir: Path | None = None):
        import bm25s

        if not pool:
            raise ValueError("the few-shot pool is empty")
        self.pool = list(pool)
        index_dir = cache_dir / f"bm25-{pool_fingerprint(self.pool)}" if cache_dir else None
        if index_dir is not None and (index_dir / "params.index.json").is_file():
            self._index = bm25s.BM25.load(index_dir, show_progress=False)
            return
        self._index = bm25s.BM25()
        self._index.index([_document(e.code_before, e.comment) for e in self.pool], show_progress=False)
        if index_dir is not None:
            index_dir.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=index_dir.parent))
            self._index.save(staging, show_progress=False)
            shutil.rmtree(index_dir, ignore_errors=True)
            staging.rename(index_dir)

    def top_k(self, task: RevisionTask, k: int) -> list[Example]:
        if k <= 0:
            return []
        wanted = min(k + 1, len(self.pool))
        hits, _ = self._index.retrieve([_document(task.code, task.comment)], k=wanted, show_progress=False)
        found = [self.pool[i] for i in hits[0]]
        found = [e for e in found if (e.code_before, e.comment) != (task.code, task.comment)]
        # Most similar last, nearest to the query.
        return found[:k][::-1]
