"""`revisor data split`: reproducible, de-duplicated train/dev splits of review-to-revision pools."""

from __future__ import annotations

import json
import random
from pathlib import Path

from model.errors import RevisorError
from model.schema import Example
from training.datasets import load_dataset


def as_codereviewer_record(example: Example) -> dict:
    """The CodeReviewer JSONL form, every line marked as context (' ')."""
    def hunk(code: str) -> str:
        return "\n".join(" " + line for line in code.split("\n"))

    return {"_id": example.id, "old": hunk(example.code_before), "new": hunk(example.code_after),
            "review": example.comment, "language": example.language}


def split_pools(paths: list[str], output: str, dev_size: int, seed: int) -> dict:
    """Merge the pools, drop duplicates, shuffle with `seed`, and write train.jsonl and dev.jsonl."""
    for path in paths:
        if Path(path).stem == "test":
            raise RevisorError(f"{path} is a test set, kept for benchmarking: split the other files")
    seen, examples, duplicates = set(), [], 0
    for path in paths:
        for example in load_dataset(path).examples:
            fields = (example.code_before, example.comment, example.code_after)
            key = tuple(" ".join(text.split()) for text in fields)
            if key in seen:
                duplicates += 1
                continue
            seen.add(key)
            examples.append(example)
    if dev_size >= len(examples):
        raise RevisorError(f"--dev-size {dev_size} leaves nothing to train on ({len(examples)} records)")
    random.Random(seed).shuffle(examples)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    parts = {"dev": examples[:dev_size], "train": examples[dev_size:]}
    for name, rows in parts.items():
        with (out / f"{name}.jsonl").open("w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(as_codereviewer_record(e)) + "\n" for e in rows)
    summary = {"sources": paths, "seed": seed, "duplicates_dropped": duplicates,
               "train": len(parts["train"]), "dev": len(parts["dev"])}
    (out / "split.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
