"""The default model: Revisor's shipped adapter, merged into the embedded model, calibrated, and
quiet on a first run."""

import json
import re
import struct
import subprocess
import sys

import pytest

from revisor.model.confidence import CALIBRATION_FILE, Calibration
from revisor.model.embedded import (
    DEFAULT_ADAPTER,
    default_model_dir,
    prepare_default_model,
    prepare_embedded_model,
)
from revisor.training.datasets import file_digest
from revisor.training.lora import ADAPTER_WEIGHTS, METADATA
from tests.conftest import ROOT, shared_path


def safetensors_dtypes(path) -> set[str]:
    header_size = struct.unpack("<Q", path.read_bytes()[:8])[0]
    header = json.loads(path.read_bytes()[8 : 8 + header_size])
    return {v["dtype"] for k, v in header.items() if k != "__metadata__"}


def test_the_shipped_adapter_is_what_its_metadata_says():
    weights = DEFAULT_ADAPTER / ADAPTER_WEIGHTS
    metadata = json.loads((DEFAULT_ADAPTER / METADATA).read_text())
    assert file_digest(weights) == metadata["adapter_sha256"]
    assert weights.stat().st_size <= 20 * 2**20 and safetensors_dtypes(weights) == {"BF16"}
    assert metadata["train_records"] > 1000 and metadata["train_tokens_per_s"] > 0
    assert metadata["config"]["rank"] == 16 and metadata["train_seconds"] > 0
    split = json.loads((DEFAULT_ADAPTER / "split.json").read_text())
    assert all(len(source["sha256"]) == 64 for source in split["sources"].values())
    assert not any(path.endswith("codereviewer/test.jsonl") for path in split["sources"])
    assert any(path.endswith("codereviewer/test.jsonl") for path in split["excluded"])
    calibration = Calibration.load(DEFAULT_ADAPTER / CALIBRATION_FILE)
    assert 0 < calibration.threshold < 1
    assert calibration.figures["target_precision"] == 0.3
    assert calibration.figures["dataset"]["path"].endswith("dev.jsonl")
    assert calibration.figures["dataset"]["rows"] == split["dev"]
    # fitted on the answers of this adapter, merged: a calibration left from another one misleads
    assert calibration.figures["model"] == default_model_dir().name
    passes = [metadata]  # trained on the split, then further from each pass's adapter
    while "continued_from" in passes[-1]:
        continued = passes[-1]["continued_from"]
        assert continued["adapter_sha256"] == continued["metadata"]["adapter_sha256"]
        passes.append(continued["metadata"])
    assert len(passes) > 1
    assert passes[-1]["data"][0]["rows"] == split["train"] > metadata["data"][0]["rows"]
    for shipped in DEFAULT_ADAPTER.glob("*.json"):  # names a reader can follow, no machine's paths
        text = shipped.read_text()
        assert not re.search(r'"(/|~|[A-Za-z]:\\\\)', text), f"{shipped.name} records an absolute path"
    assert metadata["revisor_version"] and calibration.figures["revisor_version"]


def test_prepare_model_merges_the_adapter_into_the_weights():
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    base, merged = prepare_embedded_model(), prepare_default_model()
    assert merged != base and merged.name.startswith("SmolLM2-135M-Instruct-revisor-")
    name = "model.layers.0.self_attn.q_proj.weight"
    merged_weight = load_file(merged / "model.safetensors")[name].float()
    base_weight = load_file(base / "model.safetensors")[name].float()
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32),
                                      DEFAULT_ADAPTER)
    expected = model.merge_and_unload().get_parameter(name).detach().bfloat16().float()
    assert not torch.equal(merged_weight, base_weight)
    assert torch.equal(merged_weight, expected)


ENGINE_LOG = re.compile(r"\b(INFO|WARNING|DEBUG)\b|EngineCore|it/s\]|Warning:|torch\.|vllm", re.I)


@pytest.mark.slow
def test_the_demo_prints_revisors_output_only():
    # The demo as `make demo` runs it, once set up (-o: setup's own output is not the demo's).
    result = subprocess.run(["make", "-s", "-o", ".venv/.revisor-setup", "demo"], cwd=ROOT,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = (result.stdout + result.stderr).splitlines()
    assert [line for line in lines if ENGINE_LOG.search(line)] == []
    assert any("suggestion(s) from 3 region(s) reviewed" in line for line in lines)
    posted = [line for line in lines
              if re.fullmatch(r"server/listen\.go:[\d-]+  suggestion, confidence 0\.\d\d", line)]
    threshold = Calibration.load(DEFAULT_ADAPTER / CALIBRATION_FILE).threshold
    held = [line for line in lines if re.fullmatch(
        rf"server/listen\.go:[\d-]+  held back: confidence 0\.\d\d, below the threshold {threshold:.2f}",
        line)]
    assert posted and held, "the demo shows a suggestion it posts and one it holds back"


@pytest.mark.slow
def test_bench_through_its_command_scores_the_default_configuration(tmp_path):
    dataset = shared_path("datasets/codereviewer/test.jsonl")
    command = ["bench", "--dataset", str(dataset), "--limit", "4", "--no-compile", "--output", str(tmp_path)]
    result = subprocess.run([sys.executable, "-m", "revisor", *command], cwd=ROOT, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    mine = metrics["systems"][0]
    assert mine["name"] == "revisor/fine-tuned" and mine["n"] == 4
    threshold = Calibration.load(DEFAULT_ADAPTER / CALIBRATION_FILE).threshold
    assert mine["confidence"]["threshold"] == threshold
    assert mine["confidence"]["curve"][-1]["coverage"] == 1.0
    assert mine["confidence"]["curve"][-1]["precision"] == pytest.approx(mine["exact_match"])
    assert result.stdout == (tmp_path / "report.md").read_text()
    assert [line for line in result.stderr.splitlines() if ENGINE_LOG.search(line)] == []
