"""`revisor data split`: reproducible, de-duplicated train/dev splits of review-to-revision pools;
`revisor data untrained`: the records of a split that training skipped."""

from __future__ import annotations

import json
import random
from pathlib import Path

from revisor.model.errors import RevisorError
from revisor.model.schema import Example
from revisor.training.datasets import codereviewer_record, file_digest, load_dataset

BENCHMARK_SHA256 = "5c86b763576fa18f8a86e160614349af1c936e65b38cbb98eade5af683933696"
"""`codereviewer/test.jsonl`, the benchmark: never trained, tuned or calibrated on."""


def refuse_benchmark(path: str, use: str) -> None:
    """Stop `use` (training, calibration, retrieval) from reading the benchmark, under any name."""
    file = Path(path)
    named = file.parts[-2:] == ("codereviewer", "test.jsonl")
    if named or (file.is_file() and file_digest(file) == BENCHMARK_SHA256):
        raise RevisorError(f"{path} is the CodeReviewer benchmark (codereviewer/test.jsonl): it is for "
                           f"`revisor bench` only, not for {use}")


def normalized(text: str) -> str:
    return " ".join(text.split())


def pair_key(example: Example) -> tuple[str, ...]:
    """What makes two records the same pair: code, comment and revision, whitespace aside."""
    return tuple(normalized(t) for t in (example.code_before, example.comment, example.code_after))


def split_pools(paths: list[str], output: str, dev_size: int, seed: int,
                dev_from: str | None = None, exclude: list[str] = (), by_time: bool = False) -> dict:
    """Merge the pools, drop duplicates and pairs whose code under review occurs in an `exclude`
    file, shuffle with `seed`, and write train.jsonl and dev.jsonl.

    The dev records come from `dev_from` (one of the pools) when given, so a dev split can follow
    the benchmark's distribution while training draws on every pool. `by_time` makes the newest
    records the dev split and trains only on records older than all of them, as a team's adapter
    is used: trained on past reviews, judged on the next ones.
    """
    for path in paths:
        refuse_benchmark(path, "training or calibration")
    if dev_from is not None and dev_from not in paths:
        raise RevisorError(f"--dev-from {dev_from} is not one of the pools being split")
    excluded_code = {normalized(e.code_before) for path in exclude for e in load_dataset(path).examples}
    seen, by_pool, duplicates, overlapping = set(), {}, 0, 0
    for path in paths:
        by_pool[path] = []
        for example in load_dataset(path).examples:
            key = pair_key(example)
            if key in seen:
                duplicates += 1
                continue
            seen.add(key)
            if normalized(example.code_before) in excluded_code:
                overlapping += 1
                continue
            by_pool[path].append(example)
    rng = random.Random(seed)
    dev_pool = [e for path, rows in by_pool.items() if dev_from in (None, path) for e in rows]
    if dev_size >= len(dev_pool):
        raise RevisorError(f"--dev-size {dev_size} leaves nothing to train on ({len(dev_pool)} records)")
    rng.shuffle(dev_pool)
    if by_time:
        undated = sum(not e.created_at for rows in by_pool.values() for e in rows)
        if undated:
            raise RevisorError(f"--by-time: {undated} record(s) have no created_at (`revisor mine` "
                               "writes it); split those pools at random instead")
        dev_pool.sort(key=lambda e: e.created_at, reverse=True)
    dev = dev_pool[:dev_size]
    dev_ids = {id(e) for e in dev}
    oldest_dev = min((e.created_at for e in dev), default="") if by_time else None
    train = [e for rows in by_pool.values() for e in rows
             if id(e) not in dev_ids and (oldest_dev is None or e.created_at < oldest_dev)]
    if not train:
        raise RevisorError(f"--dev-size {dev_size} leaves nothing older to train on")
    rng.shuffle(train)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("dev", dev), ("train", train)):
        with (out / f"{name}.jsonl").open("w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(codereviewer_record(e)) + "\n" for e in rows)
    summary = {"sources": {path: {"records": len(rows), "sha256": file_digest(path)}
                           for path, rows in by_pool.items()}, "seed": seed,
               "duplicates_dropped": duplicates,
               "excluded": {path: {"sha256": file_digest(path)} for path in exclude},
               "overlap_with_excluded_dropped": overlapping, "dev_from": dev_from,
               "by_time": by_time, **({"dev_since": oldest_dev} if by_time else {}),
               "train": len(train), "dev": len(dev)}
    (out / "split.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def write_untrained(train_file: str, base_model: str, max_length: int, pool: str | None, output: str,
                    shots: int = 0) -> dict:
    """Write the records of `train_file` that `revisor train --max-length --shots` skips as too
    long (of those that also occur in `pool`, where given): the adapter never saw them, so they
    are held out like the dev split and can calibrate it."""
    from transformers import AutoTokenizer

    from revisor.training.lora import tokenize_example, training_template

    refuse_benchmark(train_file, "calibration")
    examples = load_dataset(train_file).examples
    wanted = {pair_key(e) for e in load_dataset(pool).examples} if pool else None
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    template = training_template(examples, shots)
    kept = [e for e in examples if (wanted is None or pair_key(e) in wanted)
            and tokenize_example(tokenizer, template, e, max_length) is None]
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    with Path(output).open("w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(codereviewer_record(e)) + "\n" for e in kept)
    return {"records": len(examples), "from_pool": len(examples) if wanted is None
            else sum(pair_key(e) in wanted for e in examples), "untrained": len(kept), "output": output}
