"""LoRA training on the CPU with the embedded model: the adapter loads in vLLM and peft."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from revisor.model.engines.base import EngineConfig
from revisor.model.errors import RevisorError
from revisor.model.prompts import FineTunedFormat
from revisor.model.reviser import Reviser
from revisor.model.schema import Example
from revisor.training.datasets import codereviewer_record, load_dataset
from revisor.training.splits import split_pools
from tests.conftest import ROOT, shared_path
from tests.test_cli import assert_one_line_error, revisor


@pytest.fixture(scope="session")
def tiny_split(tmp_path_factory):
    out = tmp_path_factory.mktemp("split")
    split_pools([str(shared_path("datasets/codereviewer/train.jsonl"))], str(out), dev_size=200, seed=13)
    small = out / "small.jsonl"
    small.write_text("".join((out / "train.jsonl").read_text().splitlines(keepends=True)[:16]))
    return out


def train_args(data, output, *extra):
    return ("train", "--data", str(data), "--output", str(output), "--max-steps", "4",
            "--batch-size", "2", "--grad-accum", "1", "--save-steps", "2", "--learning-rate", "2e-3",
            "--max-length", "384", *extra)


@pytest.fixture(scope="session")
def adapter(tiny_split, tmp_path_factory):
    output = tmp_path_factory.mktemp("adapter") / "a"
    result = revisor(*train_args(tiny_split / "small.jsonl", output))
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    return output


def test_split_is_reproducible_deduplicated_and_held_out(tiny_split, tmp_path):
    again = tmp_path / "again"
    summary = split_pools([str(shared_path("datasets/codereviewer/train.jsonl"))], str(again), 200, 13)
    assert summary["dev"] == 200 and summary["train"] + summary["dev"] + summary["duplicates_dropped"] == 1596
    assert (again / "dev.jsonl").read_text() == (tiny_split / "dev.jsonl").read_text()
    dev = {e.code_before + e.comment for e in load_dataset(again / "dev.jsonl").examples}
    assert not dev & {e.code_before + e.comment for e in load_dataset(again / "train.jsonl").examples}


def test_bad_training_input_fails_before_training(tmp_path, tiny_split):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert_one_line_error(revisor(*train_args(empty, tmp_path / "o1")), "hold no records")
    rank_12 = revisor(*train_args(tiny_split / "small.jsonl", tmp_path / "o2", "--rank", "12"))
    assert_one_line_error(rank_12, "cannot be served by vLLM")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"old": " a", "new": " b"}\n')
    assert_one_line_error(revisor(*train_args(bad, tmp_path / "o3")), "bad.jsonl:1: missing field 'review'")


@pytest.mark.slow
def test_adapter_is_standard_peft_with_metadata(adapter, tiny_split):
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert (config["peft_type"], config["r"], config["lora_alpha"]) == ("LORA", 16, 8)
    assert (adapter / "adapter_model.safetensors").stat().st_size > 1_000_000
    meta = json.loads((adapter / "revisor_train.json").read_text())
    assert meta["steps"] == 4 and meta["train_records"] + meta["too_long_skipped"] == 16
    assert meta["train_records"] >= 8
    assert meta["data"][0]["rows"] == 16 and len(meta["data"][0]["sha256"]) == 64
    assert meta["train_tokens_per_s"] > 0
    assert meta["base_model"] == "embedded-base" and meta["revisor_version"]
    assert config["base_model_name_or_path"] == "SmolLM2-135M-Instruct"  # a name, not this machine's path
    for written in ("revisor_train.json", "adapter_config.json"):
        text = (adapter / written).read_text()
        assert str(Path.home()) not in text and str(adapter.parent) not in text, written
    again = revisor(*train_args(tiny_split / "small.jsonl", adapter))
    assert_one_line_error(again, "already holds an adapter")
    from revisor.model.compose import chosen_model, engine_config
    from revisor.model.settings import ModelSettings

    with_adapter = ModelSettings(adapter=str(adapter))  # what every command builds for --adapter A
    assert chosen_model(with_adapter) == "embedded-base"
    assert engine_config(with_adapter).adapter == str(adapter)  # the base it was trained on: accepted


@pytest.mark.slow
def test_vllm_and_peft_give_the_same_adapted_outputs_unlike_the_base(adapter, tiny_split, embedded_model,
                                                                     vllm_engine):
    from revisor.model.engines.hf import TransformersEngine
    from revisor.model.engines.vllm_local import VLLMEngine

    shortest = sorted(load_dataset(tiny_split / "small.jsonl").examples, key=lambda e: len(e.code_before))
    tasks = [e.task for e in shortest[:2]]
    config = EngineConfig(model=embedded_model, adapter=str(adapter), dtype="float32", compile=False)
    vllm = VLLMEngine(config)
    with_vllm = [a.completion.text for a in Reviser(vllm, FineTunedFormat()).revise(tasks)]
    vllm.close()
    peft = TransformersEngine(config)
    with_peft = [a.completion.text for a in Reviser(peft, FineTunedFormat()).revise(tasks)]
    without = [a.completion.text for a in Reviser(vllm_engine, FineTunedFormat()).revise(tasks)]
    assert with_vllm == with_peft
    assert with_peft != without


@pytest.mark.slow
def test_training_further_starts_from_the_adapters_weights_and_keeps_its_shape(adapter, tiny_split, tmp_path):
    from safetensors.torch import load_file

    further = tmp_path / "further"
    further_args = ("--from-adapter", str(adapter), "--max-steps", "1", "--learning-rate", "1e-9")
    other_rank = revisor(*train_args(tiny_split / "small.jsonl", further, *further_args, "--rank", "32"))
    assert_one_line_error(other_rank, "--rank 32: ")
    result = revisor(*train_args(tiny_split / "small.jsonl", further, *further_args, "--rank", "16"))
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    assert json.loads((further / "adapter_config.json").read_text())["r"] == 16
    before, after = (load_file(d / "adapter_model.safetensors") for d in (adapter, further))
    assert before.keys() == after.keys()
    lora_b = [name for name in before if "lora_B" in name]
    assert all(before[name].abs().max() > 1e-4 for name in lora_b)  # a new adapter's B starts at zero
    for name in before:  # one step at a learning rate of 1e-9 leaves them where they were
        assert (before[name].float() - after[name].float()).abs().max() < 1e-6, name
    meta = json.loads((further / "revisor_train.json").read_text())
    earlier = json.loads((adapter / "revisor_train.json").read_text())
    assert meta["continued_from"] == {"adapter_sha256": earlier["adapter_sha256"], "metadata": earlier}
    assert meta["config"]["rank"] == 16 and meta["steps"] == 1
    other = tmp_path / "OtherModel"
    other.mkdir()
    (other / "config.json").write_text("{}")
    other_base = revisor(*train_args(tiny_split / "small.jsonl", tmp_path / "o", "--from-adapter",
                                     str(adapter), "--model", str(other)))
    assert_one_line_error(other_base, "was trained for SmolLM2-135M-Instruct")


@pytest.mark.slow
def test_interrupted_run_resumes_to_the_same_step_count(tiny_split, tmp_path):
    output = tmp_path / "resumed"
    command = [sys.executable, "-m", "revisor", *train_args(tiny_split / "small.jsonl", output)]
    run = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while not (output / "checkpoints" / "checkpoint-2" / "trainer_state.json").exists():
        assert run.poll() is None and time.monotonic() < deadline, "ended before its first checkpoint"
        time.sleep(0.2)
    run.send_signal(signal.SIGKILL)
    run.wait()
    assert not (output / "adapter_config.json").exists()
    assert_one_line_error(revisor(*train_args(tiny_split / "small.jsonl", output)), "pass --resume")
    result = revisor(*train_args(tiny_split / "small.jsonl", output, "--resume"))
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    meta = json.loads((output / "revisor_train.json").read_text())
    assert meta["steps"] == 4 and meta["resumed_from_step"] >= 2  # not started again from zero
    from peft import PeftConfig

    assert PeftConfig.from_pretrained(str(output)).r == 16


@pytest.mark.slow
def test_torchrun_trains_one_adapter_from_two_processes(tiny_split, tmp_path, embedded_model):
    """Two CPU processes (gloo) under torch's own launcher: the first writes the adapter and its
    metadata, the other nothing, and the adapter loads."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    output = tmp_path / "distributed"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "revisor", *train_args(tiny_split / "small.jsonl", output, "--max-steps", "2")]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count('"train_records"') == 1  # one process speaks for the run
    meta = json.loads((output / "revisor_train.json").read_text())
    assert meta["processes"] == 2 and meta["steps"] == 2
    assert sorted(p.name for p in output.iterdir() if not p.is_dir()) == [
        "README.md", "adapter_config.json", "adapter_model.safetensors", "revisor_train.json", "run.json"]
    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(embedded_model), str(output))


def test_split_by_time_holds_out_the_newest_and_trains_only_on_older(tmp_path):
    pool = tmp_path / "mined.jsonl"
    examples = [Example(f"r{day}", f"x = {day}", "rename x", f"y = {day}", "python",
                        created_at=f"2026-03-{day:02d}T10:00:00+00:00") for day in range(1, 11)]
    pool.write_text("".join(json.dumps(codereviewer_record(e)) + "\n" for e in reversed(examples)))
    summary = split_pools([str(pool)], str(tmp_path / "split"), dev_size=3, seed=1, by_time=True)
    dev = load_dataset(tmp_path / "split" / "dev.jsonl").examples
    train = load_dataset(tmp_path / "split" / "train.jsonl").examples
    assert sorted(e.id for e in dev) == ["r10", "r8", "r9"]
    assert sorted(e.id for e in train) == [f"r{day}" for day in range(1, 8)]
    assert summary["dev_since"] == "2026-03-08T10:00:00+00:00"
    undated = tmp_path / "undated.jsonl"
    undated.write_text(json.dumps(codereviewer_record(Example("u", "a", "b", "c"))) + "\n" + pool.read_text())
    with pytest.raises(RevisorError, match="1 record"):
        split_pools([str(undated)], str(tmp_path / "split2"), dev_size=3, seed=1, by_time=True)


@pytest.mark.slow
def test_data_untrained_writes_the_records_training_skips(tiny_split, tmp_path, embedded_model):
    from transformers import AutoTokenizer

    from revisor.training.lora import FineTunedFormat, tokenize_example

    small = tiny_split / "small.jsonl"
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(small.read_text().splitlines(keepends=True)[::2]))  # half the records
    tokenizer = AutoTokenizer.from_pretrained(embedded_model)
    lengths = {e.id: len(tokenize_example(tokenizer, FineTunedFormat(), e, 10**6)["input_ids"])
               for e in load_dataset(small).examples}
    limit = sorted(lengths.values())[len(lengths) // 2]
    from revisor.training.splits import write_untrained

    for source, wanted in ((None, set(lengths)), (pool, {e.id for e in load_dataset(pool).examples})):
        out = tmp_path / "untrained.jsonl"
        summary = write_untrained(str(small), embedded_model, limit, source and str(source), str(out))
        written = load_dataset(out).examples
        assert {e.id for e in written} == {i for i in wanted if lengths[i] > limit} != set()
        assert summary["untrained"] == len(written)
    unwritable = revisor("data", "untrained", str(small), "--max-length", str(limit), "--output",
                         str(out / "under-a-file.jsonl"))
    assert_one_line_error(unwritable, f"{out}: File exists")
    benchmark = shared_path("datasets/codereviewer/test.jsonl")
    refused = revisor("data", "untrained", str(benchmark), "--max-length", "256", "--output", str(out))
    assert_one_line_error(refused, "benchmark")


def test_an_adapter_trained_with_retrieved_pairs_is_prompted_with_them(tmp_path, monkeypatch):
    from revisor.model.compose import build_strategy, resolve_strategy
    from revisor.model.settings import model_settings

    monkeypatch.setenv("REVISOR_HOME", str(tmp_path / "home"))
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "revisor_train.json").write_text(json.dumps({"shots": 2}))
    pool = shared_path("datasets/codereviewer/train.jsonl")
    settings = model_settings(adapter=str(adapter), pool=str(pool))
    assert resolve_strategy(settings) == "fine-tuned+retrieval"
    strategy = build_strategy("fine-tuned+retrieval", settings)
    assert strategy.k == 2 and len(strategy.render(load_dataset(pool).examples[0].task)) == 6
    assert build_strategy("fine-tuned+retrieval", model_settings(adapter=str(adapter), pool=str(pool),
                                                                 shots=1)).k == 1
    with pytest.raises(RevisorError, match="fine-tuned\\+retrieval needs --pool / REVISOR_POOL"):
        build_strategy("fine-tuned+retrieval", model_settings(adapter=str(adapter)))
    (adapter / "revisor_train.json").write_text(json.dumps({"shots": 0}))
    assert resolve_strategy(settings) == "fine-tuned"
    assert resolve_strategy(model_settings()) == "fine-tuned"  # the default model: trained without
    assert resolve_strategy(model_settings(model="embedded-base")) == "zero-shot"


@pytest.mark.slow
def test_an_adapter_trained_after_retrieved_pairs_records_them_and_answers_with_them(tiny_split, tmp_path,
                                                                                    embedded_model):
    from revisor.training.splits import write_untrained

    small, output = tiny_split / "small.jsonl", tmp_path / "rag"
    trained = revisor(*train_args(small, output, "--shots", "1", "--max-steps", "2", "--max-length", "512"))
    assert trained.returncode == 0, trained.stderr.decode()[-3000:]
    meta = json.loads((output / "revisor_train.json").read_text())
    assert meta["shots"] == 1 and meta["train_records"] > 0
    skipped = {shots: write_untrained(str(small), embedded_model, 512, None,
                                      str(tmp_path / f"u{shots}.jsonl"), shots)["untrained"]
               for shots in (0, 1)}
    assert meta["too_long_skipped"] == skipped[1] > skipped[0]  # the same, longer, prompts as training's
    code = tmp_path / "a.py"
    code.write_text("def f(p):\n    f = open(p)\n    return f.read()\n")
    ask = ("revise", "-c", "use a context manager", str(code), "--adapter", str(output),
           "--engine", "transformers")
    assert_one_line_error(revisor(*ask), "fine-tuned+retrieval needs --pool")
    answered = revisor(*ask, "--pool", str(small))
    assert answered.returncode == 0, answered.stderr.decode()[-3000:]
