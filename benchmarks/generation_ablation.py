"""What vLLM's prefix cache and Revisor's bounded generation each save, side by side in one run.

    python benchmarks/generation_ablation.py --limit 32 [--compile]

Runs few-shot prompts for the same records three ways with the in-process vLLM engine (prefix
cache on + bounded, prefix cache off + bounded, prefix cache on + unbounded), clearing the prefix
cache between runs, and prints seconds per example, output tokens and the ratios.
"""

from __future__ import annotations

import argparse
import time

from revisor.model.embedded import resolve_model, revisor_home
from revisor.model.engines.base import EngineConfig
from revisor.model.engines.vllm_local import VLLMEngine
from revisor.model.prompts import make_strategy
from revisor.model.retrieval import BM25Retriever
from revisor.model.reviser import Reviser
from revisor.training.datasets import load_dataset


def timed(engine: VLLMEngine, reviser: Reviser, tasks) -> tuple[float, int]:
    engine.reset_prefix_cache()
    start = time.perf_counter()
    answers = reviser.revise(tasks)
    return time.perf_counter() - start, sum(a.completion.output_tokens for a in answers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="../shared/datasets/codereviewer/test.jsonl")
    parser.add_argument("--pool", default="../shared/datasets/codereviewer/train.jsonl")
    parser.add_argument("--limit", type=int, default=32)
    parser.add_argument("--model", default="embedded-base", help="as for revisor bench")
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()

    tasks = [e.task for e in load_dataset(args.dataset).examples[: args.limit]]
    retriever = BM25Retriever(load_dataset(args.pool).examples, revisor_home() / "index")
    strategy = make_strategy("few-shot", retriever=retriever)
    model = resolve_model(args.model)
    rows = {}
    for prefix_caching in (True, False):
        engine = VLLMEngine(EngineConfig(model=model, compile=args.compile, prefix_caching=prefix_caching))
        timed(engine, Reviser(engine, strategy), tasks[:4])  # warm-up
        rows[f"prefix cache {'on' if prefix_caching else 'off'}, bounded"] = timed(
            engine, Reviser(engine, strategy), tasks)
        if prefix_caching:
            unbounded = Reviser(engine, strategy, bounded=False)
            rows["prefix cache on, unbounded"] = timed(engine, unbounded, tasks)
        engine.close()

    n = len(tasks)
    print(f"| configuration ({n} few-shot records) | s/example | output tokens |")
    print("|---|---:|---:|")
    for name, (seconds, tokens) in rows.items():
        print(f"| {name} | {seconds / n:.3f} | {tokens} |")
    base = rows["prefix cache on, bounded"][0]
    print(f"prefix cache saves: off/on time = {rows['prefix cache off, bounded'][0] / base:.2f}x")
    unbounded = rows["prefix cache on, unbounded"][0]
    print(f"bounded generation saves: unbounded/bounded time = {unbounded / base:.2f}x")


if __name__ == "__main__":
    main()
