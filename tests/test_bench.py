"""`revisor bench` end to end on real records with the real in-process vLLM engine."""

import json
from dataclasses import replace
from pathlib import Path

import pytest

from revisor.model.prompts import ZeroShot, make_strategy
from revisor.model.retrieval import BM25Retriever
from revisor.model.reviser import Reviser
from revisor.training.bench import BenchConfig, run_bench
from revisor.training.datasets import load_dataset
from tests.conftest import shared_path
from tests.fakes import FakeEngine, char_steps


class Borrowed:
    """The session's engine, lent to run_bench (which closes what it builds)."""

    def __init__(self, engine):
        self.engine = engine
        self.description = engine.description
        self.generate = engine.generate

    def close(self):
        pass


@pytest.mark.slow
def test_bench_scores_strategies_beside_peers_and_writes_the_report(vllm_engine, tmp_path):
    dataset = str(shared_path("datasets/codereviewer/test.jsonl"))
    pool = load_dataset(shared_path("datasets/codereviewer/train.jsonl")).examples
    config = BenchConfig(dataset=dataset, strategies=["zero-shot", "few-shot"], engines=["vllm"],
                         limit=4, output=str(tmp_path))
    strategies = {"zero-shot": make_strategy("zero-shot"),
                  "few-shot": make_strategy("few-shot", retriever=BM25Retriever(pool, tmp_path / "idx"))}
    table = run_bench(config, lambda model, engine, strategy: Reviser(Borrowed(vllm_engine),
                                                                      strategies[strategy]))

    metrics = json.loads((tmp_path / "metrics.json").read_text())
    names = [s["name"] for s in metrics["systems"]]
    assert names == ["revisor/zero-shot", "revisor/few-shot", "chatgpt", "codereviewer"]
    for system in metrics["systems"]:
        assert system["n"] == 4
        assert 0.0 <= system["exact_match"] <= 1.0 and 0.0 <= system["unchanged"] <= 1.0
    peers = {s["name"]: s for s in metrics["systems"]}
    stored = [json.loads(line) for line in Path(dataset).read_text().splitlines()][:4]
    assert peers["codereviewer"]["exact_match"] == pytest.approx(sum(r["model_em"] for r in stored) / 4)
    assert peers["chatgpt"]["exact_match"] == pytest.approx(sum(r["gpt_em"] for r in stored) / 4)
    for name in ("revisor/zero-shot", "revisor/few-shot"):
        t = metrics["throughput"][name]
        assert t["examples"] == 4 and t["examples_per_s"] > 0 and t["output_tokens"] > 0
        assert t["peak_rss_mib"] > 100
    assert "vllm: few-shot / zero-shot time per example" in metrics["ratios"]

    rows = [json.loads(line) for line in (tmp_path / "predictions.jsonl").open()]
    assert len(rows) == 4 * 4
    assert {r["system"] for r in rows} == set(names)
    assert (tmp_path / "report.png").read_bytes()[:4] == b"\x89PNG"
    assert table == (tmp_path / "report.md").read_text()
    assert "| revisor/few-shot | 4 |" in table


def test_bench_reports_precision_against_coverage_at_the_threshold(tmp_path):
    """A scripted model whose certainty is known: exact answers from one, wrong ones from another."""
    dataset = shared_path("datasets/codereviewer/test.jsonl")
    examples = load_dataset(dataset).examples[:20]
    right = {e.code_before.strip("\n"): e.code_after for e in examples[:4]}

    def answer(code: str) -> str:
        return right.get(code.strip("\n"), code + "x = 1\n")

    class Scripted(FakeEngine):
        """Exact answers at log-probability -0.1 a token, wrong ones at -1."""

        def generate(self, requests):
            completions = super().generate(requests)
            return [replace(c, steps=char_steps(c.text, -0.1 if c.text.rstrip("\n") in right_texts else -1.0))
                    for c in completions]

    right_texts = {text.rstrip("\n") for text in right.values()}
    engine = Scripted(answer)
    config = BenchConfig(dataset=str(dataset), strategies=["zero-shot"], engines=["vllm"], limit=20,
                         output=str(tmp_path))
    table = run_bench(config, lambda model, engine_name, strategy: Reviser(engine, ZeroShot(),
                                                                           min_confidence=0.5))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    mine = next(s for s in metrics["systems"] if s["name"] == "revisor/zero-shot")
    confidence = mine["confidence"]
    exact = round(mine["exact_match"] * 20)
    assert exact >= 4
    assert confidence["threshold"] == 0.5
    assert confidence["coverage"] == pytest.approx(exact / 20) and confidence["precision"] == 1.0
    assert confidence["curve"][-1]["coverage"] == 1.0
    assert confidence["curve"][-1]["precision"] == pytest.approx(mine["exact_match"])
    precisions = [p["precision"] for p in confidence["curve"]]
    assert precisions == sorted(precisions, reverse=True)  # only wrong answers below the right ones
    rows = [json.loads(line) for line in (tmp_path / "predictions.jsonl").open()]
    mine_rows = [r for r in rows if r["system"] == "revisor/zero-shot"]
    # An appended line breaks some fragments' syntax: those are held back, with no confidence.
    assert all(0 < r["confidence"] <= 1 for r in mine_rows if "held_back" not in r)
    assert all(r["confidence"] is None and not r["exact_match"] for r in mine_rows if "held_back" in r)
    assert "## Precision against coverage" in table and "| revisor/zero-shot | 0.500 |" in table
    assert f"| 100.0% ({exact} of {exact}) | {confidence['precision_interval'][0]:.1%}–100.0% |" in table
