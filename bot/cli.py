"""The `revisor` command: the one place that reads options and builds the objects."""

from __future__ import annotations

import difflib
import functools
import json
import os
import sys
from pathlib import Path

import click

from bot.compose import DEFAULT_POOL, build_reviser, build_strategy, engine_config
from model.embedded import prepare_embedded_model, resolve_model
from model.engines.registry import ENGINES, make_engine
from model.errors import RevisorError
from model.prompts import STRATEGIES
from model.schema import NoRevision, RevisionTask


def model_options(command):
    """The options every command that runs the model shares."""
    options = [
        click.option("--engine", type=click.Choice(ENGINES), default="vllm", show_default=True,
                     help="vllm: in-process vLLM; openai: an OpenAI-compatible server such as "
                          "`vllm serve`; transformers: in-process fallback."),
        click.option("--model", default=None,
                     help="Checkpoint directory or Hugging Face id [default: the embedded "
                          "SmolLM2-135M-Instruct]. With --engine openai: the served model name "
                          "[default: the server's first]."),
        click.option("--adapter", default=None,
                     help="PEFT LoRA adapter directory; with --engine openai, the LoRA module "
                          "name the server was started with."),
        click.option("--base-url", envvar="REVISOR_BASE_URL", default=None,
                     help="OpenAI-compatible server, e.g. http://gpu-box:8000/v1 (--engine openai); "
                          "several replicas comma-separated: requests take turns, a failing one "
                          "is skipped."),
        click.option("--api-key", envvar="REVISOR_API_KEY", default="EMPTY", show_default=False,
                     help="API key for --base-url [env: REVISOR_API_KEY]."),
        click.option("--strategy", "strategy_name", default="zero-shot", show_default=True,
                     type=click.Choice(STRATEGIES),
                     help="Prompt strategy; fine-tuned is the format adapters are trained on."),
        click.option("--persona/--no-persona", default=False,
                     help="Open the prompt with an expert-developer persona line."),
        click.option("--pool", default=DEFAULT_POOL, show_default=True,
                     help="Review-to-revision pairs (.jsonl or .csv) that few-shot demonstrations "
                          "are retrieved from. Never a benchmark's test file."),
        click.option("--shots", default=3, show_default=True, type=click.IntRange(1, 16),
                     help="Demonstrations per prompt (few-shot)."),
        click.option("--compile/--no-compile", default=False, show_default=True,
                     help="vLLM: compile the model (slow start, faster generation)."),
    ]
    return functools.reduce(lambda cmd, option: option(cmd), reversed(options), command)


def read_text(source: str) -> str:
    """A file's text ('-' is standard input); a clear error for what is not UTF-8 text."""
    try:
        data = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    except OSError as error:
        raise RevisorError(f"cannot read {source}: {error.strerror}") from None
    if b"\0" in data[:8192]:
        raise RevisorError(f"{source} is a binary file: Revisor revises text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise RevisorError(f"{source} is not UTF-8 text: convert it first (e.g. iconv)") from None


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="revisor")
def cli() -> None:
    """Revisor turns code-review comments into revised code, served by vLLM.

    \b
    revise         revise one piece of code following a review comment
    review         propose suggestions for a local diff (`git diff main | revisor review`)
    bench          Exact Match on review-to-revision records, beside published systems
    train          fine-tune a LoRA adapter on review-to-revision pairs
    data split     reproducible train/dev splits of review-to-revision pools
    serve          the GitHub App webhook service (with workers)
    worker         workers for stored webhook deliveries
    action         the GitHub Action entry point
    prepare-model  convert the embedded model once (done on first use anyway)
    """


@cli.command("prepare-model")
@click.option("--force", is_flag=True, help="Convert again even if the checkpoint exists.")
def prepare_model(force: bool) -> None:
    """Convert the bundled SmolLM2-135M-Instruct GGUF into a checkpoint under $REVISOR_HOME."""
    click.echo(prepare_embedded_model(force=force))


@cli.command()
@click.argument("source", default="-", metavar="[FILE|-]")
@click.option("--comment", "-c", required=True, help="The review comment to follow.")
@click.option("--language", default=None, help="Language of the code [default: from FILE's name].")
@click.option("--diff", "as_diff", is_flag=True, help="Print a unified diff against the input.")
@model_options
def revise(source: str, comment: str, language: str | None, as_diff: bool, **model) -> None:
    """Revise code from FILE (or standard input) following a review comment."""
    from model.languages import language_of_path

    code = read_text(source)
    if not code.strip():
        raise RevisorError(f"{'standard input' if source == '-' else source} holds no code")
    task = RevisionTask(code, comment, language or language_of_path(source))
    answer = build_reviser(**model).revise([task])[0]
    outcome = answer.outcome
    if isinstance(outcome, NoRevision):
        click.echo(f"revisor: no suggestion: {outcome.reason}", err=True)
        sys.exit(3)
    if as_diff:
        name = "stdin" if source == "-" else source
        click.echo("".join(difflib.unified_diff(
            code.splitlines(keepends=True), outcome.code.splitlines(keepends=True),
            f"a/{name}", f"b/{name}")), nl=False)
    else:
        click.echo(outcome.code, nl=not outcome.code.endswith("\n"))


@cli.command()
@click.option("--diff", "diff_file", default="-", show_default=True,
              help="Unified diff file; '-' reads standard input.")
@click.option("--comment", "comments", multiple=True, metavar="PATH:LINE[-END]=TEXT",
              help="A reviewer's comment on new-side lines: revise them to address it "
                   "(repeatable). Without any, every changed region is reviewed.")
@click.option("--max-files", default=20, show_default=True, type=click.IntRange(1))
@click.option("--max-regions", default=40, show_default=True, type=click.IntRange(1))
@click.option("--max-tokens", default=24_000, show_default=True, type=click.IntRange(1),
              help="Budget of estimated code tokens sent to the model.")
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@model_options
def review(diff_file: str, comments: tuple[str, ...], max_files: int, max_regions: int,
           max_tokens: int, output_format: str, **model) -> None:
    """Propose suggestions for a unified diff: `git diff main | revisor review`."""
    from bot.diff import parse_diff
    from bot.pipeline import Budget, LineComment
    from bot.pipeline import review as run_review
    from bot.report import review_json, review_text

    if diff_file == "-" and sys.stdin.isatty():
        raise RevisorError("no diff on standard input: pipe `git diff` in, or pass --diff FILE")
    diff = parse_diff(read_text(diff_file))
    line_comments = [LineComment.parse(spec) for spec in comments]
    for c in line_comments:  # fail on a misplaced comment before the model starts
        diff.region_at(c.path, c.start, c.end)
    result = run_review(diff, build_reviser(**model), line_comments,
                        Budget(max_files, max_regions, max_tokens))
    click.echo(review_json(result) if output_format == "json" else review_text(result), nl=False)


@cli.command()
@click.option("--dataset", required=True, help="Records to score (.jsonl CodeReviewer or .csv Tufano).")
@click.option("--strategy", "strategies", default="zero-shot", show_default=True,
              help="Comma-separated strategies, e.g. zero-shot,few-shot.")
@click.option("--engine", "engines", default="vllm", show_default=True,
              help="Comma-separated engines to compare on the same records, e.g. vllm,transformers.")
@click.option("--limit", type=click.IntRange(1), default=None, help="Score the first N records.")
@click.option("--output", default="runs/bench", show_default=True, type=click.Path(file_okay=False))
@click.option("--model", default=None, help="As for `revise` [default: the embedded model].")
@click.option("--adapter", default=None, help="PEFT adapter directory (or LoRA module name).")
@click.option("--base-url", envvar="REVISOR_BASE_URL", default=None, help="As for `revise`.")
@click.option("--api-key", envvar="REVISOR_API_KEY", default="EMPTY")
@click.option("--persona/--no-persona", default=False)
@click.option("--pool", default=DEFAULT_POOL, show_default=True, help="Few-shot retrieval pool.")
@click.option("--shots", default=3, show_default=True, type=click.IntRange(1, 16))
@click.option("--compile/--no-compile", default=True, show_default=True,
              help="vLLM: compile the model (slower start, faster generation).")
@click.option("--prefix-cache/--no-prefix-cache", default=True, show_default=True,
              help="vLLM's automatic prefix caching (off only to measure what it saves).")
@click.option("--bounded/--unbounded", default=True, show_default=True,
              help="Stop at the closing fence and cap new tokens (off only to measure it).")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(1),
              help="transformers engine: requests per batch.")
@click.option("--skip-malformed", is_flag=True, help="Skip malformed records (counted) instead of failing.")
def bench(**options) -> None:
    """Score Revisor by Exact Match on review-to-revision records, beside the published systems
    whose predictions the dataset carries (CodeReviewer, ChatGPT).

    Writes predictions.jsonl, metrics.json, report.md and report.png into --output.
    """
    from training.bench import BenchConfig, run_bench

    config = BenchConfig.from_options(options)
    strategies = {name: build_strategy(name, config.persona, config.pool, config.shots)
                  for name in config.strategies}

    def engine(name: str):
        return make_engine(name, engine_config(
            name, config.model, config.adapter, config.base_url, config.api_key, config.compile,
            prefix_caching=config.prefix_cache, batch_size=config.batch_size))

    click.echo(run_bench(config, strategies, engine), nl=False)


@cli.command()
@click.option("--data", "data", multiple=True, required=True,
              help="Training pairs (.jsonl CodeReviewer or .csv Tufano); repeatable.")
@click.option("--output", required=True, type=click.Path(file_okay=False),
              help="Directory for the adapter, its metadata and checkpoints.")
@click.option("--model", default=None, help="Base model [default: the embedded SmolLM2-135M-Instruct].")
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
@click.option("--seed", default=42, show_default=True, type=int)
@click.option("--save-steps", default=25, show_default=True, type=click.IntRange(1),
              help="Checkpoint every N optimizer steps.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True,
              help="auto: bf16 mixed precision on GPUs that support it, fp32 elsewhere; bf16 also "
                   "runs on CPUs with AMX/AVX512-BF16.")
@click.option("--resume", is_flag=True, help="Continue from the last checkpoint in --output.")
def train(data, output, model, eval_data, eval_limit, target_modules, **hyper) -> None:
    """Fine-tune a LoRA (or DoRA) adapter on review-to-revision pairs.

    Training uses the fine-tuned prompt format and computes the loss on the revised code only.
    Multi-GPU: `accelerate launch -m bot.cli train ...` with the same options.
    """
    from training.datasets import load_dataset
    from training.lora import TrainConfig, check_output, file_digest, held_out_exact_match
    from training.lora import train as run_training

    config = TrainConfig(data=list(data), output=output, model=model or "", eval_data=eval_data,
                         eval_limit=eval_limit, target_modules=target_modules.split(","), **hyper)
    base = resolve_model(model)
    check_output(config, base)
    examples, sources = [], []
    for path in data:
        loaded = load_dataset(path).examples
        examples += loaded
        sources.append({"path": path, "sha256": file_digest(path), "rows": len(loaded)})
    if not examples:
        raise RevisorError(f"{', '.join(data)} hold no records to train on")
    held_out = load_dataset(eval_data).examples[:eval_limit] if eval_data else []
    evaluate = functools.partial(held_out_exact_match, base, held_out) if held_out else None
    metadata = run_training(config, base, examples, sources, evaluate)
    click.echo(json.dumps({k: v for k, v in metadata.items() if k != "config"}, indent=2))


@cli.group()
def data() -> None:
    """Prepare datasets."""


@data.command("split")
@click.argument("pools", nargs=-1, required=True)
@click.option("--output", required=True, type=click.Path(file_okay=False))
@click.option("--dev-size", default=200, show_default=True, type=click.IntRange(1))
@click.option("--seed", default=13, show_default=True, type=int)
def data_split(pools, output, dev_size, seed) -> None:
    """Merge POOLS, de-duplicate, and write a reproducible train.jsonl / dev.jsonl split.

    Test sets (files named test.*) are refused: they are for benchmarking only.
    """
    from training.splits import split_pools

    click.echo(json.dumps(split_pools(list(pools), output, dev_size, seed), indent=2))


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(0),
              help="Worker threads in this process (0: only store deliveries; run `revisor worker`).")
def serve(host: str, port: int, workers: int) -> None:
    """Run the GitHub App: POST /api/github/webhooks, GET /healthz, GET /metrics.

    \b
    Configuration (environment):
      GITHUB_APP_ID, GITHUB_APP_PRIVATE_KEY or GITHUB_APP_PRIVATE_KEY_PATH, GITHUB_WEBHOOK_SECRET,
      GITHUB_API_URL (default https://api.github.com),
      REVISOR_DATABASE (the SQLite job store, default revisor.db) or REVISOR_REDIS_URL (jobs in
      Redis, for workers on several machines, e.g. redis://redis:6379/0),
      REVISOR_BOT_NAME, REVISOR_LEASE_SECONDS, REVISOR_ENGINE, REVISOR_MODEL, REVISOR_ADAPTER,
      REVISOR_ADAPTERS, REVISOR_BASE_URL (comma-separated replicas), REVISOR_API_KEY,
      REVISOR_STRATEGY, REVISOR_POOL.
    """
    import threading

    import uvicorn

    from bot.app import create_app
    from bot.config import Settings
    from bot.jobs import open_store
    from bot.service import configure_logging, start_workers

    settings = Settings.from_env()
    configure_logging()
    store = open_store(settings.database, settings.redis_url)
    stop = threading.Event()
    start_workers(settings, store, workers, stop)
    app = create_app(settings.webhook_secret, store, settings.max_payload_bytes)
    try:
        uvicorn.run(app, host=host, port=port, log_config=None, access_log=False)
    finally:
        stop.set()


@cli.command()
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1),
              help="Jobs this process runs at once, sharing one model engine.")
@click.option("--metrics-port", type=click.IntRange(1, 65535),
              help="Serve this worker's Prometheus metrics on this port.")
def worker(threads: int, metrics_port: int | None) -> None:
    """Process stored deliveries (beside `revisor serve --workers 0`, same environment).

    Run as many as the model server keeps busy, on one or more machines: with REVISOR_REDIS_URL
    they share one queue, and a job whose worker dies is taken over once its lease runs out.
    """
    import threading

    from prometheus_client import start_http_server

    from bot.config import Settings
    from bot.jobs import open_store
    from bot.metrics import REGISTRY, JobCounts
    from bot.service import configure_logging, start_workers

    settings = Settings.from_env()
    configure_logging()
    store = open_store(settings.database, settings.redis_url)
    if metrics_port is not None:
        REGISTRY.register(JobCounts(store))
        try:
            start_http_server(metrics_port, registry=REGISTRY)
        except OSError as error:
            raise RevisorError(f"--metrics-port {metrics_port}: {error.strerror}") from None
    stop = threading.Event()
    try:
        for thread in start_workers(settings, store, threads, stop):
            thread.join()
    except KeyboardInterrupt:
        stop.set()


@cli.command()
def action() -> None:
    """Handle the event of a GitHub Actions run (see action.yml); reads GITHUB_EVENT_NAME,
    GITHUB_EVENT_PATH, GITHUB_REPOSITORY, GITHUB_API_URL and INPUT_TOKEN / GITHUB_TOKEN, plus the
    REVISOR_* model settings."""
    from bot.config import ModelSettings
    from bot.service import configure_logging, run_action

    configure_logging()
    click.echo(run_action(dict(os.environ), ModelSettings.from_env(dict(os.environ))))


def main() -> None:
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("revisor: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except RevisorError as error:
        click.echo(f"revisor: {error}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
