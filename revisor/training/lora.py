"""`revisor train`: LoRA/DoRA adapters on review-to-revision pairs, with transformers + peft.

The prompt is the fine-tuned format from `model.prompts` (one definition for inference and
training) and the loss is on the revised code alone. Checkpoints go to `OUTPUT/checkpoints`;
the adapter is written to OUTPUT only when training ends (in bf16), with `adapter_config.json`
last, so a killed run never leaves an adapter that looks complete.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from revisor.model.adapters import METADATA, check_adapter
from revisor.model.engines.vllm_local import VLLM_LORA_RANKS
from revisor.model.errors import RevisorError
from revisor.model.prompts import FineTunedFormat
from revisor.model.schema import Example
from revisor.training.datasets import file_digest, readable_path, revisor_version

ADAPTER_WEIGHTS = "adapter_model.safetensors"
IGNORE = -100


@dataclass(frozen=True)
class TrainConfig:
    data: list[str]
    output: str
    model: str = ""
    eval_data: str | None = None
    eval_limit: int = 200
    method: str = field(default="lora", metadata={"help": "lora or dora (vLLM serves lora only)"})
    rank: int = field(default=16, metadata={"help": "r=16 as in Pornprasit & Tantithamthavorn 2024"})
    alpha: int = field(default=8, metadata={"help": "alpha=8 as in the paper"})
    dropout: float = 0.05
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    epochs: float = 1.0
    max_steps: int = -1
    learning_rate: float = 2e-4
    batch_size: int = 4
    grad_accum: int = 4
    max_length: int = 512
    shots: int = field(default=0, metadata={"help": "retrieved pairs before each record's prompt"})
    from_adapter: str | None = field(default=None, metadata={"help": "an adapter to train further"})
    seed: int = 42
    save_steps: int = 25
    precision: str = field(default="auto", metadata={"help": "auto: bf16 on GPUs that support it, else fp32"})
    resume: bool = False

    def __post_init__(self):
        if self.method not in ("lora", "dora"):
            raise RevisorError(f"--method {self.method!r}: choose lora or dora")
        if self.rank not in VLLM_LORA_RANKS and self.method == "lora":
            raise RevisorError(
                f"--rank {self.rank} cannot be served by vLLM: choose one of "
                f"{', '.join(map(str, VLLM_LORA_RANKS))}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise RevisorError(f"--precision {self.precision!r}: choose auto, fp32 or bf16")
        if not self.data:
            raise RevisorError("--data: give at least one training file")
        for name, value in (("--epochs", self.epochs), ("--learning-rate", self.learning_rate),
                            ("--batch-size", self.batch_size), ("--grad-accum", self.grad_accum),
                            ("--max-length", self.max_length)):
            if value <= 0:
                raise RevisorError(f"{name} must be positive, not {value}")
        if not 0 <= self.shots <= 16:
            raise RevisorError(f"--shots must be 0 to 16, not {self.shots}")


def is_complete_adapter(directory: Path) -> bool:
    return (directory / "adapter_config.json").is_file() and (directory / METADATA).is_file()


def training_template(examples: list[Example], shots: int) -> FineTunedFormat:
    """The fine-tuned format; with `shots`, each record's prompt first shows that many other
    records of the training data, retrieved by BM25 as `fine-tuned+retrieval` does at inference."""
    if not shots:
        return FineTunedFormat()
    from revisor.model.embedded import revisor_home
    from revisor.model.prompts import make_strategy
    from revisor.model.retrieval import BM25Retriever

    retriever = BM25Retriever(examples, revisor_home() / "index")
    template = make_strategy("fine-tuned+retrieval", retriever=retriever, k=shots)
    assert isinstance(template, FineTunedFormat)
    return template


def tokenize_example(tokenizer, template: FineTunedFormat, example: Example, max_length: int) -> dict | None:
    """Prompt and target token ids, with labels only on the target; None if over max_length."""
    messages, target = template.training_chat(example)
    prompt = tokenizer.apply_chat_template(messages, continue_final_message=True, tokenize=True,
                                           return_dict=False)
    answer = tokenizer(target, add_special_tokens=False)["input_ids"]
    ids = prompt + answer
    if len(ids) > max_length:
        return None
    return {"input_ids": ids, "labels": [IGNORE] * len(prompt) + answer}


class PadCollator:
    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, rows: list[dict]):
        import torch

        width = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id)
        labels = torch.full((len(rows), width), IGNORE)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            n = len(row["input_ids"])
            ids[i, :n] = torch.tensor(row["input_ids"])
            labels[i, :n] = torch.tensor(row["labels"])
            mask[i, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def check_output(config: TrainConfig, base_model: str) -> Path:
    """Refuse, before any training, an output that would lose or mix up work."""
    output = Path(config.output)
    if is_complete_adapter(output):
        raise RevisorError(f"{output} already holds an adapter: choose a new --output")
    checkpoints = output / "checkpoints"
    if checkpoints.is_dir() and any(checkpoints.iterdir()) and not config.resume:
        raise RevisorError(f"{output} holds checkpoints of an interrupted run: pass --resume, "
                           "or choose a new --output")
    started = output / "run.json"
    if config.resume and started.is_file():
        earlier = json.loads(started.read_text())
        if earlier["base_model"] != base_model:
            raise RevisorError(f"{output} was trained on {earlier['base_model']}, not {base_model}: "
                               "resume with the same --model")
    return output


def is_main_process() -> bool:
    """The first process of a distributed run (`torchrun`, `accelerate launch`), or the only one."""
    return int(os.environ.get("RANK", "0")) == 0


def train(config: TrainConfig, base_model: str, train_examples: list[Example], sources: list[dict],
          evaluate: Callable[[Path | None, FineTunedFormat], float] | None = None) -> dict | None:
    """Train an adapter and write it with its metadata into `config.output`; return the metadata
    (None in the other processes of a distributed run, which write nothing).

    `sources` describes the data files (path, sha256, rows); `evaluate(adapter_dir or None,
    template)` gives held-out Exact Match of the adapter prompted with the template it was trained
    on, or of the base model prompted zero-shot.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    output = check_output(config, base_model)
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    template = training_template(train_examples, config.shots)
    rows = [r for e in train_examples if (r := tokenize_example(tokenizer, template, e, config.max_length))]
    too_long = len(train_examples) - len(rows)
    if not rows:
        raise RevisorError(f"no training record fits --max-length {config.max_length}")
    main = is_main_process()
    if main:
        output.mkdir(parents=True, exist_ok=True)
        (output / "run.json").write_text(json.dumps({"base_model": base_model}))

    metadata: dict = {"revisor_version": revisor_version(), "base_model": model_name(config.model),
                      "data": sources, "config": readable_config(config), "shots": config.shots,
                      "too_long_skipped": too_long, "train_records": len(rows)}
    if config.from_adapter:
        metadata["continued_from"] = earlier_training(Path(config.from_adapter))
    if evaluate is not None and config.eval_data and main:
        metadata["eval_exact_match_before"] = evaluate(
            Path(config.from_adapter) if config.from_adapter else None, template)

    gpu_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    use_bf16 = config.precision == "bf16" or (config.precision == "auto" and gpu_bf16)
    # Weights stay fp32; with bf16 the Trainer computes under autocast (mixed precision).
    model = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32)
    if config.from_adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, config.from_adapter, is_trainable=True)
    else:
        model = get_peft_model(model, LoraConfig(
            r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
            target_modules=config.target_modules, use_dora=config.method == "dora", task_type="CAUSAL_LM"))
    args = TrainingArguments(
        output_dir=str(output / "checkpoints"),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        lr_scheduler_type="cosine",
        train_sampling_strategy="group_by_length",  # batches of similar length: little padding
        warmup_steps=0.03,
        logging_steps=5,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=2,
        bf16=use_bf16,
        use_cpu=not torch.cuda.is_available(),
        seed=config.seed,
        data_seed=config.seed,
        report_to=[],
        disable_tqdm=False,  # the progress bar: steps and time left
        remove_unused_columns=False,
    )
    mean_tokens = sum(len(r["input_ids"]) for r in rows) / len(rows)
    tokens_per_step = mean_tokens * config.batch_size * config.grad_accum * args.world_size
    trainer = Trainer(model=model, args=args, train_dataset=rows,
                      data_collator=PadCollator(tokenizer.pad_token_id or 0),
                      callbacks=[progress_callback(tokens_per_step)])
    started = time.perf_counter()
    resume = config.resume and _has_checkpoint(output / "checkpoints")
    first_step = _checkpoint_step(output / "checkpoints") if resume else 0
    result = trainer.train(resume_from_checkpoint=True if resume else None)
    seconds = time.perf_counter() - started
    if not trainer.is_world_process_zero():
        return None  # under torchrun or accelerate, the first process alone writes the adapter
    metadata.update({
        "processes": trainer.args.world_size,
        "steps": trainer.state.global_step,
        "resumed_from_step": first_step,
        "train_loss": result.training_loss,
        "train_seconds": round(seconds, 1),
        "train_tokens_per_s": round(
            (trainer.state.global_step - first_step) * tokens_per_step / seconds, 1) if seconds else None,
    })
    staging = output / ".adapter-staging"
    shutil.rmtree(staging, ignore_errors=True)
    model.to(torch.bfloat16).save_pretrained(staging)  # bf16: half the size, as vLLM serves it
    name_base_model(staging / "adapter_config.json", base_model)
    metadata["adapter_sha256"] = file_digest(str(staging / ADAPTER_WEIGHTS))
    _publish(staging, output)
    if evaluate is not None and config.eval_data:
        metadata["eval_exact_match_after"] = evaluate(output, template)
    write_metadata(output, metadata)
    return metadata


def adapter_shape(directory: str, base_model: str) -> dict:
    """The rank, alpha, dropout, modules and method of an adapter trained for `base_model`: training
    it further keeps them."""
    config = check_adapter(directory, base_model)
    return {"rank": config["r"], "alpha": config["lora_alpha"], "dropout": config.get("lora_dropout", 0.0),
            "target_modules": sorted(config["target_modules"]),
            "method": "dora" if config.get("use_dora") else "lora"}


def earlier_training(directory: Path) -> dict:
    """What the adapter being trained further was: its weights' digest and its own metadata."""
    earlier = directory / METADATA
    return {"adapter_sha256": file_digest(str(directory / ADAPTER_WEIGHTS)),
            **({"metadata": json.loads(earlier.read_text())} if earlier.is_file() else {})}


def model_name(given: str) -> str:
    """The base model as metadata names it: the name given (`embedded-base`, a hub id) or, for a
    local checkpoint, its directory's name, never a machine's path."""
    local = Path(given).expanduser()
    return local.resolve().name if local.exists() else given


def readable_config(config: TrainConfig) -> dict:
    described = asdict(config)
    described["data"] = [readable_path(path) for path in config.data]
    described["output"] = readable_path(config.output)
    if config.eval_data:
        described["eval_data"] = readable_path(config.eval_data)
    return described


def name_base_model(adapter_config: Path, base_model: str) -> None:
    """peft writes the base model's local path into adapter_config.json; its name travels (the
    checkpoint directory's name, which `check_adapter` compares, or the hub id)."""
    config = json.loads(adapter_config.read_text())
    config["base_model_name_or_path"] = Path(base_model).name if Path(base_model).exists() else base_model
    adapter_config.write_text(json.dumps(config, indent=2) + "\n")


def held_out_exact_match(base_model: str, examples: list[Example], adapter: Path | None,
                         template: FineTunedFormat) -> float:
    """Exact Match on held-out pairs: the adapter with the template it was trained on, or (None)
    the base model prompted zero-shot, both greedy with in-process vLLM."""
    from revisor.model.engines.base import EngineConfig
    from revisor.model.engines.vllm_local import VLLMEngine
    from revisor.model.prompts import ZeroShot
    from revisor.model.reviser import Reviser
    from revisor.training.metrics import score_system

    strategy = template if adapter else ZeroShot()
    engine = VLLMEngine(EngineConfig(model=base_model, adapter=str(adapter) if adapter else None,
                                     compile=False))
    answers = Reviser(engine, strategy).revise([e.task for e in examples])
    engine.close()
    score = score_system(strategy.name, examples, [a.code for a in answers]).exact_match
    print(f"held-out Exact Match ({'adapter' if adapter else 'base model, zero-shot'}): {score:.1%}")
    return score


def progress_callback(tokens_per_step: float):
    """Adds tokens/s to the Trainer's logs (its progress bar already shows steps and time left)."""
    from transformers import TrainerCallback

    class Throughput(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.started, self.first_step = time.perf_counter(), state.global_step

        def on_log(self, args, state, control, logs=None, **kwargs):
            elapsed = time.perf_counter() - self.started
            if logs is not None and elapsed > 0:
                steps = state.global_step - self.first_step
                logs["tokens_per_s"] = round(steps * tokens_per_step / elapsed, 1)

    return Throughput()


def _has_checkpoint(directory: Path) -> bool:
    return _checkpoint_step(directory) > 0


def _checkpoint_step(directory: Path) -> int:
    steps = [int(p.name.split("-")[1]) for p in directory.glob("checkpoint-*") if p.name[11:].isdigit()]
    return max(steps, default=0)


def _publish(staging: Path, output: Path) -> None:
    """Move the adapter into place, its config last: its presence marks a complete adapter."""
    files = sorted(staging.iterdir(), key=lambda p: p.name == "adapter_config.json")
    for path in files:
        os.replace(path, output / path.name)
    staging.rmdir()


def write_metadata(output: Path, metadata: dict) -> None:
    temporary = output / f".{METADATA}.tmp"
    temporary.write_text(json.dumps(metadata, indent=2) + "\n")
    os.replace(temporary, output / METADATA)
