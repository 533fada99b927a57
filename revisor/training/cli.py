"""Training's commands (`train`, `data split`, `data untrained`, `calibrate`, `bench`);
`revisor.bot.cli` joins them into the one `revisor` group."""

from __future__ import annotations

import functools
import json

import click
from click.core import ParameterSource

from revisor.model.compose import build_reviser, chosen_model
from revisor.model.confidence import FEATURES
from revisor.model.embedded import EMBEDDED_BASE, resolve_model
from revisor.model.errors import RevisorError
from revisor.model.settings import model_options, model_settings


@click.command()
@click.option("--dataset", required=True, help="Records to score (.jsonl CodeReviewer or .csv Tufano).")
@click.option("--limit", type=click.IntRange(1), default=None, help="Score the first N records.")
@click.option("--output", default="runs/bench", show_default=True, type=click.Path(file_okay=False))
@model_options(several=("engine", "model", "strategy"))
@click.option("--prefix-cache/--no-prefix-cache", default=True, show_default=True,
              help="vLLM's automatic prefix caching (off only to measure what it saves).")
@click.option("--bounded/--unbounded", default=True, show_default=True,
              help="Stop at the closing fence and cap new tokens (off only to measure it).")
@click.option("--departures/--no-departures", default=True, show_default=True,
              help="Where the greedy answer changes nothing, answer with the likeliest one that "
                   "does (off only to measure it).")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(1),
              help="transformers engine: requests per batch.")
@click.option("--skip-malformed", is_flag=True, help="Skip malformed records (counted) instead of failing.")
def bench(dataset, limit, output, prefix_cache, bounded, departures, batch_size, skip_malformed,
          **model) -> None:
    """Score Revisor by Exact Match on review-to-revision records, beside the published systems
    whose predictions the dataset carries (CodeReviewer, ChatGPT), with precision against
    coverage as the confidence threshold moves.

    With no --model or --strategy it scores exactly the default configuration, threshold included.
    Writes predictions.jsonl, metrics.json, report.md and report.png into --output.
    """
    from revisor.training.bench import BenchConfig, run_bench

    several = {name: [part.strip() for part in (model.pop(name) or "").split(",") if part.strip()]
               for name in ("engine", "model", "strategy")}
    shared = model_settings(**model)  # REVISOR_* variables apply where no flag is given
    config = BenchConfig(dataset=dataset, strategies=several["strategy"] or [shared.strategy],
                         engines=several["engine"] or [shared.engine],
                         models=several["model"] or [chosen_model(shared)], output=output, limit=limit,
                         settings=shared, prefix_cache=prefix_cache, bounded=bounded,
                         departures=departures, batch_size=batch_size, skip_malformed=skip_malformed)
    runs = {(run["model"], run["engine"], run["strategy"]): run for run in config.runs()}

    def reviser(model: str, engine: str, strategy: str):
        return build_reviser(model_settings(**runs[model, engine, strategy]),
                             prefix_caching=prefix_cache, batch_size=batch_size)

    click.echo(run_bench(config, reviser), nl=False)


@click.command()
@click.option("--dataset", required=True,
              help="Held-out review-to-revision pairs, e.g. the dev.jsonl of `revisor data split`; "
                   "never the benchmark.")
@click.option("--target-precision", default=0.3, show_default=True,
              type=click.FloatRange(0, 1, min_open=True),
              help="Choose the lowest threshold whose suggestions are at least this often exactly right.")
@click.option("--output", default=None, type=click.Path(dir_okay=False),
              help="Where to write the calibration [default: calibration.json beside --adapter].")
@click.option("--limit", type=click.IntRange(1), default=None, help="Use the first N records.")
@click.option("--fit-also", multiple=True,
              help="More held-out pairs (repeatable) to fit the confidence on, e.g. records training "
                   "skipped (`revisor data untrained`); the threshold is placed on --dataset alone.")
@click.option("--answers", default=None, type=click.Path(file_okay=False),
              help="Keep the model's answers to each dataset in this directory; datasets whose "
                   "answers are kept there are not answered again (e.g. for another "
                   "--target-precision: seconds instead of a pass over the records). Answers kept "
                   "with other model settings are refused; remove it after training again.")
@click.option("--features", "candidates", default=",".join(FEATURES), show_default=True,
              callback=lambda _ctx, _param, value: split_features(value),
              help="The features the fit may weigh, comma-separated; it keeps the subset whose "
                   "held-out confidences are likeliest. Fewer measure what one of them adds.")
@model_options(omit=("calibration", "min_confidence"))
def calibrate(dataset, target_precision, output, limit, fit_also, answers, candidates, **model) -> None:
    """Fit the confidence of a model's suggestions on a dev split and choose the threshold that
    reaches a target precision; print precision and coverage, and how well calibrated it is."""
    from pathlib import Path

    from revisor.model.confidence import CALIBRATION_FILE
    from revisor.training.calibrate import run_calibration
    from revisor.training.datasets import load_dataset
    from revisor.training.splits import refuse_benchmark

    settings = model_settings(**model)
    for path in (dataset, *fit_also):
        refuse_benchmark(path, "calibration")
        load_dataset(path)  # a missing or malformed file fails now, not after the model has loaded
    if output is None:
        if not settings.adapter or settings.engine == "openai":
            raise RevisorError("--output: say where to write the calibration (there is no adapter "
                               "directory to put it beside)")
        output = str(Path(settings.adapter) / CALIBRATION_FILE)
    asked = settings.model_dump(exclude={"api_key", "base_url", "compile"})  # what the answers depend on
    click.echo(run_calibration(lambda: build_reviser(settings), dataset, target_precision, Path(output),
                               limit, fit_also, Path(answers) if answers else None, asked, candidates),
               nl=False)


def split_features(value: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    unknown = [name for name in names if name not in FEATURES]
    if unknown or not names:
        raise click.BadParameter(f"{', '.join(unknown) or 'none given'} (the features are "
                                 f"{', '.join(FEATURES)})")
    return names


@click.command()
@click.option("--data", "data", multiple=True, required=True,
              help="Training pairs (.jsonl CodeReviewer or .csv Tufano); repeatable.")
@click.option("--output", required=True, type=click.Path(file_okay=False),
              help="Directory for the adapter, its metadata and checkpoints.")
@click.option("--model", default=EMBEDDED_BASE, show_default=True,
              help="Base model: a checkpoint directory or Hugging Face id.")
@click.option("--eval-data", default=None, help="Held-out pairs: Exact Match before and after training.")
@click.option("--eval-limit", default=200, show_default=True, type=click.IntRange(1))
@click.option("--method", type=click.Choice(["lora", "dora"]), default="lora", show_default=True,
              help="DoRA adapters load in peft (--engine transformers); vLLM serves LoRA only.")
@click.option("--rank", default=16, show_default=True, type=int,
              help="LoRA rank (the paper's open-model setting: 16).")
@click.option("--alpha", default=8, show_default=True, type=int, help="LoRA alpha (the paper's: 8).")
@click.option("--dropout", default=0.05, show_default=True, type=float)
@click.option("--target-modules", default="q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj",
              show_default=True, help="Comma-separated module names to adapt.")
@click.option("--epochs", default=1.0, show_default=True, type=float)
@click.option("--max-steps", default=-1, show_default=True, type=int, help="Overrides --epochs when > 0.")
@click.option("--learning-rate", default=2e-4, show_default=True, type=float)
@click.option("--batch-size", default=4, show_default=True, type=click.IntRange(1))
@click.option("--grad-accum", default=4, show_default=True, type=click.IntRange(1),
              help="Gradient accumulation steps.")
@click.option("--max-length", default=512, show_default=True, type=click.IntRange(16),
              help="Longer records are skipped (and counted).")
@click.option("--shots", default=0, show_default=True, type=click.IntRange(0, 16),
              help="Put this many other training records, retrieved by BM25, before each record's "
                   "prompt: the adapter then answers with --strategy fine-tuned+retrieval and a --pool.")
@click.option("--from-adapter", default=None, type=click.Path(file_okay=False, exists=True),
              help="Train this adapter further (e.g. on pairs it skipped as too long, or for another "
                   "epoch) instead of a new one; it keeps its rank, alpha, dropout, modules and method "
                   "(those options, if given, must match it).")
@click.option("--seed", default=42, show_default=True, type=int)
@click.option("--save-steps", default=25, show_default=True, type=click.IntRange(1),
              help="Checkpoint every N optimizer steps.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True,
              help="auto: bf16 mixed precision on GPUs that support it, fp32 elsewhere; bf16 is "
                   "fast only on CPUs with AMX or AVX512-BF16 (many times slower without).")
@click.option("--resume", is_flag=True, help="Continue from the last checkpoint in --output.")
def train(data, output, model, eval_data, eval_limit, target_modules, **hyper) -> None:
    """Fine-tune a LoRA (or DoRA) adapter on review-to-revision pairs.

    Training uses the fine-tuned prompt format (after --shots retrieved pairs, if given) and
    computes the loss on the revised code only.
    Several GPUs or machines: `torchrun --nproc-per-node N -m revisor train ...` (or `accelerate
    launch -m revisor train ...`) with the same options.
    """
    from revisor.training.datasets import load_dataset, provenance
    from revisor.training.lora import TrainConfig, adapter_shape, check_output, held_out_exact_match
    from revisor.training.lora import train as run_training
    from revisor.training.splits import refuse_benchmark

    for path in (*data, *([eval_data] if eval_data else [])):
        refuse_benchmark(path, "training")
    base = resolve_model(model)
    shape = {"target_modules": target_modules.split(",")}
    if hyper["from_adapter"]:
        given = {**hyper, "target_modules": sorted(shape["target_modules"])}
        shape = adapter_shape(hyper["from_adapter"], base)
        context = click.get_current_context()
        for name, value in shape.items():
            source = context.get_parameter_source(name)
            if source is not ParameterSource.DEFAULT and given[name] != value:
                option = "--" + name.replace("_", "-")
                raise RevisorError(f"{option} {given[name]}: {hyper['from_adapter']} has "
                                   f"{value}, which training it further keeps; drop {option}")
        hyper = {k: v for k, v in hyper.items() if k not in shape}
    config = TrainConfig(data=list(data), output=output, model=model, eval_data=eval_data,
                         eval_limit=eval_limit, **shape, **hyper)
    check_output(config, base)
    examples, sources = [], []
    for path in data:
        loaded = load_dataset(path).examples
        examples += loaded
        sources.append(provenance(path, len(loaded)))
    if not examples:
        raise RevisorError(f"{', '.join(data)} hold no records to train on")
    held_out = load_dataset(eval_data).examples[:eval_limit] if eval_data else []
    evaluate = functools.partial(held_out_exact_match, base, held_out) if held_out else None
    metadata = run_training(config, base, examples, sources, evaluate)
    if metadata is not None:  # the first process of a distributed run speaks for it
        click.echo(json.dumps({k: v for k, v in metadata.items() if k != "config"}, indent=2))


@click.group()
def data() -> None:
    """Prepare datasets."""


@data.command("split")
@click.argument("pools", nargs=-1, required=True)
@click.option("--output", required=True, type=click.Path(file_okay=False))
@click.option("--dev-size", default=200, show_default=True, type=click.IntRange(1))
@click.option("--dev-from", default=None,
              help="Draw the dev records from this one of POOLS only [default: from all].")
@click.option("--exclude", multiple=True,
              help="Drop every pair whose code under review occurs in this file (repeatable), "
                   "e.g. the benchmark.")
@click.option("--by-time", is_flag=True,
              help="The newest --dev-size records are the dev split, and only older ones are trained "
                   "on (records need created_at, as `revisor mine` writes).")
@click.option("--seed", default=13, show_default=True, type=int)
def data_split(pools, output, dev_size, dev_from, exclude, by_time, seed) -> None:
    """Merge POOLS, de-duplicate, and write a reproducible train.jsonl / dev.jsonl split.

    The benchmark (codereviewer/test.jsonl, under any name) is refused as a pool; pass it to
    --exclude to drop training pairs that share its code.
    """
    from revisor.training.splits import split_pools

    click.echo(json.dumps(split_pools(list(pools), output, dev_size, seed, dev_from, list(exclude), by_time),
                          indent=2))


@data.command("untrained")
@click.argument("train_file")
@click.option("--max-length", required=True, type=click.IntRange(16),
              help="The --max-length the adapter was trained with.")
@click.option("--from", "pool", default=None,
              help="Keep only records that also occur in this file, e.g. the pool the dev split "
                   "was drawn from (the benchmark's kind of data).")
@click.option("--model", default=EMBEDDED_BASE, show_default=True,
              help="The base model the adapter was trained on (its tokenizer counts the tokens).")
@click.option("--shots", default=0, show_default=True, type=click.IntRange(0, 16),
              help="The --shots the adapter was trained with.")
@click.option("--output", required=True, type=click.Path(dir_okay=False))
def data_untrained(train_file, max_length, pool, model, shots, output) -> None:
    """Write the records of TRAIN_FILE that `revisor train --max-length N` skipped as too long.

    The adapter was never trained on them: like the dev split, they are held out, and `revisor
    calibrate --fit-also` fits the confidence on them too. (With --shots, other records' prompts
    may have shown them as retrieved pairs.)
    """
    from revisor.training.splits import write_untrained

    click.echo(json.dumps(write_untrained(train_file, resolve_model(model), max_length, pool, output,
                                          shots), indent=2))


COMMANDS = (train, data, calibrate, bench)
