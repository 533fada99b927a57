"""`revisor bench` end to end on real records with the real in-process vLLM engine."""

import json
from pathlib import Path

import pytest

from model.prompts import make_strategy
from model.retrieval import BM25Retriever
from tests.conftest import shared_path
from training.bench import BenchConfig, run_bench
from training.datasets import load_dataset

pytestmark = pytest.mark.slow


class Borrowed:
    """The session's engine, lent to run_bench (which closes what it builds)."""

    def __init__(self, engine):
        self.engine = engine
        self.description = engine.description
        self.generate = engine.generate

    def close(self):
        pass


def test_bench_scores_strategies_beside_peers_and_writes_the_report(vllm_engine, tmp_path):
    dataset = str(shared_path("datasets/codereviewer/test.jsonl"))
    pool = load_dataset(shared_path("datasets/codereviewer/train.jsonl")).examples
    config = BenchConfig(dataset=dataset, strategies=["zero-shot", "few-shot"], engines=["vllm"],
                         limit=6, output=str(tmp_path))
    strategies = {"zero-shot": make_strategy("zero-shot"),
                  "few-shot": make_strategy("few-shot", retriever=BM25Retriever(pool, tmp_path / "idx"))}
    table = run_bench(config, strategies, lambda name: Borrowed(vllm_engine))

    metrics = json.loads((tmp_path / "metrics.json").read_text())
    names = [s["name"] for s in metrics["systems"]]
    assert names == ["revisor/zero-shot", "revisor/few-shot", "chatgpt", "codereviewer"]
    for system in metrics["systems"]:
        assert system["n"] == 6
        assert 0.0 <= system["exact_match"] <= 1.0 and 0.0 <= system["unchanged"] <= 1.0
    peers = {s["name"]: s for s in metrics["systems"]}
    stored = [json.loads(line) for line in Path(dataset).read_text().splitlines()][:6]
    assert peers["codereviewer"]["exact_match"] == pytest.approx(sum(r["model_em"] for r in stored) / 6)
    assert peers["chatgpt"]["exact_match"] == pytest.approx(sum(r["gpt_em"] for r in stored) / 6)
    for name in ("revisor/zero-shot", "revisor/few-shot"):
        t = metrics["throughput"][name]
        assert t["examples"] == 6 and t["examples_per_s"] > 0 and t["output_tokens"] > 0
        assert t["peak_rss_mib"] > 100
    assert "vllm: few-shot / zero-shot time per example" in metrics["ratios"]

    rows = [json.loads(line) for line in (tmp_path / "predictions.jsonl").open()]
    assert len(rows) == 6 * 4
    assert {r["system"] for r in rows} == set(names)
    assert (tmp_path / "report.png").read_bytes()[:4] == b"\x89PNG"
    assert table == (tmp_path / "report.md").read_text()
    assert "| revisor/few-shot | 6 |" in table
