"""The `revisor` command: the one place that reads options and builds the objects."""

from __future__ import annotations

import difflib
import json
import multiprocessing
import os
import signal
import sys
from contextlib import contextmanager
from pathlib import Path

import click

from revisor.model.compose import build_reviser
from revisor.model.embedded import prepare_default_model
from revisor.model.errors import Interrupted, RevisorError
from revisor.model.logs import configure_quiet
from revisor.model.schema import LowConfidence, NoRevision, RevisionTask
from revisor.model.settings import model_options, model_settings
from revisor.training.cli import COMMANDS as TRAINING_COMMANDS


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


class SectionedGroup(click.Group):
    """`revisor --help` lists each command once, under the section of those who use it."""

    SECTIONS = {
        "Review code": {
            "revise": "revise one piece of code following a review comment",
            "review": "suggestions for a local diff (`git diff main | revisor review`)",
        },
        "Run on GitHub": {
            "serve": "the GitHub App's webhook service (with workers)",
            "worker": "workers for stored webhook deliveries, on this or other machines",
            "action": "the GitHub Action's entry point (see action.yml)",
            "jobs": "jobs by status; queue failed ones again",
            "deliveries": "webhook deliveries GitHub could not deliver; send them again",
            "report": "how many posted suggestions were applied, per repository and model",
        },
        "Train and measure": {
            "mine": "review-to-revision pairs from a repository's pull requests",
            "data": "split pools into train/dev; find the records training skipped",
            "train": "fine-tune a LoRA adapter on review-to-revision pairs",
            "calibrate": "fit the confidence on held-out pairs and choose its threshold",
            "bench": "Exact Match and precision against coverage, beside published systems",
            "prepare-model": "build the default model once (done on first use anyway)",
        },
    }

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        for title, commands in self.SECTIONS.items():
            with formatter.section(title):
                formatter.write_dl(list(commands.items()))


@click.group(cls=SectionedGroup,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="revisor")
@click.option("--verbose", "-v", is_flag=True,
              help="Show the engines' and libraries' logs and warnings (or REVISOR_LOG_LEVEL=debug).")
def cli(verbose: bool) -> None:
    """Revisor turns code-review comments into committable suggestions, with a model served by
    vLLM. Each command's --help says more; every model option also reads its REVISOR_* variable."""
    configure_quiet(verbose)


for command in TRAINING_COMMANDS:
    cli.add_command(command)


@cli.command("prepare-model")
@click.option("--force", is_flag=True, help="Build again even if the checkpoint exists.")
def prepare_model(force: bool) -> None:
    """Convert the bundled SmolLM2-135M-Instruct GGUF into a checkpoint under $REVISOR_HOME and
    merge Revisor's adapter into it: the default model."""
    click.echo(prepare_default_model(force=force))


@cli.command()
@click.argument("source", default="-", metavar="[FILE|-]")
@click.option("--comment", "-c", required=True, help="The review comment to follow.")
@click.option("--language", default=None, help="Language of the code [default: from FILE's name].")
@click.option("--diff", "as_diff", is_flag=True, help="Print a unified diff against the input.")
@model_options
def revise(source: str, comment: str, language: str | None, as_diff: bool, **model) -> None:
    """Revise code from FILE (or standard input) following a review comment."""
    from revisor.model.languages import language_of_path

    code = read_text(source)
    if not code.strip():
        raise RevisorError(f"{'standard input' if source == '-' else source} holds no code")
    task = RevisionTask(code, comment, language or language_of_path(source))
    reviser = build_reviser(model_settings(**model))
    try:
        answer = reviser.revise([task])[0]
    finally:
        reviser.engine.close()
    outcome = answer.outcome
    if isinstance(outcome, NoRevision):
        reason = outcome.reason if isinstance(outcome, LowConfidence) else f"no suggestion: {outcome.reason}"
        click.echo(f"revisor: {reason}", err=True)
        sys.exit(3)
    click.echo(f"revisor: confidence {outcome.confidence:.2f}", err=True)
    if as_diff:
        name = "stdin" if source == "-" else source
        click.echo("".join(difflib.unified_diff(
            code.splitlines(keepends=True), outcome.code.splitlines(keepends=True),
            f"a/{name}", f"b/{name}")), nl=False)
    else:
        click.echo(outcome.code, nl=not outcome.code.endswith("\n"))


@cli.command()
@click.argument("diff_file", default="-", metavar="[DIFF|-]")
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
    """Propose suggestions for a unified diff (a file, or standard input): `git diff main | revisor
    review`, or `revisor review change.diff --comment 'app.py:11-13=use a context manager'`."""
    from revisor.bot.diff import parse_diff
    from revisor.bot.pipeline import Budget, LineComment
    from revisor.bot.pipeline import review as run_review
    from revisor.bot.report import review_json, review_text

    if diff_file == "-" and sys.stdin.isatty():
        raise RevisorError("no diff on standard input: pipe `git diff` in, or name a diff file")
    diff = parse_diff(read_text(diff_file))
    line_comments = [LineComment.parse(spec) for spec in comments]
    for c in line_comments:  # fail on a misplaced comment before the model starts
        diff.region_at(c.path, c.start, c.end)
    reviser = build_reviser(model_settings(**model))
    try:
        result = run_review(diff, reviser, line_comments, Budget(max_files, max_regions, max_tokens))
    finally:
        reviser.engine.close()
    click.echo(review_json(result) if output_format == "json" else review_text(result), nl=False)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(0),
              help="Worker threads in this process (0: only store deliveries; run `revisor worker`).")
@click.option("--metrics-port", type=click.IntRange(1, 65535),
              help="Serve /metrics on this port instead of the webhook port (keep it unpublished).")
@model_options
def serve(host: str, port: int, workers: int, metrics_port: int | None, **model) -> None:
    """Run the GitHub App: POST /api/github/webhooks, GET /healthz, GET /metrics.

    Reads GITHUB_APP_ID, GITHUB_APP_PRIVATE_KEY (or GITHUB_APP_PRIVATE_KEY_PATH) and
    GITHUB_WEBHOOK_SECRET; jobs go to $REVISOR_HOME/revisor.db, REVISOR_DATABASE or
    REVISOR_REDIS_URL. A comment that asks Revisor gets an 👀 reaction as its job is stored. Every
    variable: docs/configuration.md.
    """
    import uvicorn

    from revisor.bot.app import create_app
    from revisor.bot.config import service_settings
    from revisor.bot.service import acknowledger, configure_logging, start_workers

    service, github, stored = service_settings()
    model_settings_ = model_settings(**model)
    configure_logging()
    store = stored.open()
    pool = start_workers(service, github, model_settings_, store, workers)
    app = create_app(github.webhook_secret.get_secret_value(), store, service.max_payload_bytes, pool.threads,
                     metrics_route=metrics_port is None, acknowledge=acknowledger(github, service.bot_name),
                     body_seconds=service.body_seconds)
    if metrics_port is not None:
        start_metrics_server(metrics_port, app.state.metrics.registry, pool)
    try:
        uvicorn.run(app, host=host, port=port, log_config=None, access_log=False,  # until SIGTERM/SIGINT
                    limit_concurrency=service.max_connections + 1)  # uvicorn counts the one it refuses
    finally:
        pool.shutdown()


def start_metrics_server(port: int, registry, pool) -> None:
    """Prometheus metrics on `port`, in a thread; a port in use stops the workers and says so."""
    from prometheus_client import start_http_server

    try:
        start_http_server(port, registry=registry)
    except OSError as error:
        pool.shutdown()
        raise RevisorError(f"--metrics-port {port}: {error.strerror}") from None


@cli.command()
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1),
              help="Jobs this process runs at once, sharing one model engine.")
@click.option("--metrics-port", type=click.IntRange(1, 65535),
              help="Serve this worker's Prometheus metrics on this port.")
@model_options
def worker(threads: int, metrics_port: int | None, **model) -> None:
    """Process stored deliveries (beside `revisor serve --workers 0`, same environment).

    Run as many as the model server keeps busy, on one or more machines: with REVISOR_REDIS_URL
    they share one queue, and a job whose worker dies is taken over once its lease runs out.
    """
    from revisor.bot.config import service_settings
    from revisor.bot.metrics import REGISTRY, JobCounts
    from revisor.bot.service import configure_logging, start_workers

    service, github, stored = service_settings()
    model_settings_ = model_settings(**model)
    configure_logging()
    store = stored.open()
    pool = start_workers(service, github, model_settings_, store, threads)
    if metrics_port is not None:
        REGISTRY.register(JobCounts(store))
        start_metrics_server(metrics_port, REGISTRY, pool)
    try:
        for thread in pool.threads:
            thread.join()
    except Interrupted:  # SIGTERM or SIGINT (see main)
        pass
    finally:
        pool.shutdown()


def env_store():
    """The job store `serve` uses: REVISOR_REDIS_URL, else the SQLite file REVISOR_DATABASE
    (default $REVISOR_HOME/revisor.db)."""
    from revisor.bot.config import StoreSettings, read_env

    return read_env(StoreSettings).open()


@cli.command()
@click.option("--requeue", multiple=True, metavar="DELIVERY_ID",
              help="Queue this failed job again, with a fresh set of attempts (repeatable).")
@click.option("--requeue-all", is_flag=True,
              help="Queue the failed jobs again, oldest first, at most --limit.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1),
              help="With --requeue-all: how many at most (run it again for the rest).")
def jobs(requeue: tuple[str, ...], requeue_all: bool, limit: int) -> None:
    """List the jobs by status and those that failed for good; queue failed ones again once their
    cause is fixed. Reads the store `serve` uses: REVISOR_DATABASE (default
    $REVISOR_HOME/revisor.db) or REVISOR_REDIS_URL."""
    store = env_store()
    failed = store.failed()
    chosen = [d for d, _, _ in failed][:limit] if requeue_all else list(requeue)
    for delivery in chosen:
        if not store.requeue(delivery):
            raise RevisorError(f"no failed job has delivery id {delivery!r}: `revisor jobs` lists them")
        click.echo(f"queued {delivery} again")
    if requeue_all:
        rest = len(failed) - len(chosen)
        click.echo(f"{len(chosen)} of {len(failed)} failed job(s) queued again"
                   + (f"; {rest} left: run it again once these are done" if rest else ""))
    counts = store.counts()
    click.echo(", ".join(f"{status}: {n}" for status, n in sorted(counts.items())) or "no jobs")
    for delivery, event, error in store.failed():
        click.echo(f"failed {delivery} ({event}): {error}")


@cli.command()
@click.option("--repo", metavar="OWNER/NAME", help="The repository to mine (with --from-jobs: to export).")
@click.option("--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Pairs, as JSON lines; run again with the same --output to resume.")
@click.option("--since", type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
              help="Only comments written since this date (UTC), on pull requests updated since.")
@click.option("--limit", type=click.IntRange(1), help="At most the N most recently updated pull requests.")
@click.option("--max-wait", default=3600, show_default=True, type=click.IntRange(0),
              help="Longest wait, in seconds, for a rate limit to reset before giving up.")
@click.option("--from-jobs", is_flag=True,
              help="Export instead the suggestions Revisor posted that were applied, from the job store "
                   "(REVISOR_DATABASE or REVISOR_REDIS_URL), with the comments they answered.")
def mine(repo: str | None, output: Path, since, limit: int | None, max_wait: int, from_jobs: bool) -> None:
    """Mine review-to-revision pairs from a repository's pull requests: each review comment whose
    lines a later commit of the same pull request changed. The records train (`revisor train`),
    split (`revisor data split --by-time`) and benchmark (`revisor bench`) as they are.

    Reads GITHUB_TOKEN, or GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY(_PATH) of an App installed on
    the repository, and GITHUB_API_URL for GitHub Enterprise Server. Waits out rate limits.
    """
    import re
    from datetime import UTC

    from tqdm import tqdm

    from revisor.bot.config import GitHubSettings, read_env
    from revisor.bot.github import repository_client
    from revisor.bot.mining import MiningRun
    from revisor.bot.mining import mine as mine_pairs

    if repo is not None and not re.fullmatch(r"[\w.-]+/[\w.-]+", repo):
        raise RevisorError(f"--repo {repo!r}: expected OWNER/NAME, e.g. octocat/hello-world")
    if from_jobs:
        export_applied(output, repo)
        return
    if repo is None:
        raise RevisorError("pass --repo OWNER/NAME (or --from-jobs to export applied suggestions)")
    since = since.replace(tzinfo=UTC) if since else None
    run = MiningRun.open(output, repo, since)
    with github_errors("what was mined is kept: run the same command again to go on"):
        repository = repository_client(read_env(GitHubSettings), repo, max_wait).get_repo(repo)
        with tqdm(desc="pull requests", unit="pr", initial=len(run.pulls_done)) as bar:
            mine_pairs(repository, run, since, limit,
                       lambda run: (bar.update(), bar.set_postfix(pairs=run.pairs)))
    click.echo(f"{run.pairs} pair(s) in {output}; {run.pulls_read} pull request(s) read "
               "(open ones are read again by the next run, for comments answered since)")
    for reason, count in run.skipped.most_common():
        click.echo(f"skipped {count}: {reason}")


@contextmanager
def github_errors(what_then: str):
    """GitHub's refusals and an unreachable API as one line each, saying `what_then`."""
    from github import GithubException
    from requests import RequestException

    try:
        yield
    except GithubException as error:
        message = error.data.get("message") if isinstance(error.data, dict) else error.data
        raise RevisorError(f"GitHub answered {error.status} ({message}); {what_then}") from None
    except RequestException as error:
        from revisor.bot.config import GitHubSettings, read_env

        api = read_env(GitHubSettings).api_url
        raise RevisorError(f"cannot reach GitHub at {api} ({type(error).__name__}); check GITHUB_API_URL; "
                           f"{what_then}") from None


def export_applied(output: Path, repo: str | None) -> None:
    """`revisor mine --from-jobs`: the applied suggestions that answered a reviewer, as pairs."""
    from revisor.bot.outcomes import applied_records

    if output.exists():
        raise RevisorError(f"{output} exists: pass a new --output")
    records, unprompted = applied_records(env_store().suggestions(), repo)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    click.echo(f"{len(records)} pair(s) from applied suggestions in {output}"
               + (f"; {unprompted} applied in unprompted reviews answer no comment and are left out"
                  if unprompted else ""))


@cli.command()
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
def report(output_format: str) -> None:
    """How many posted suggestions were applied, per repository and per model/adapter.

    From the job store (REVISOR_DATABASE or REVISOR_REDIS_URL). A suggestion is applied when a
    later head holds its lines where the commented ones were, changed when those lines were
    rewritten otherwise, left when the pull request closed without touching them, and pending
    until then. Acceptance is applied / (applied + changed + left). The same change to the same
    lines, posted more than once (asked for again, or suggested again on a later head), counts once.
    """
    from revisor.bot.outcomes import OUTCOMES, acceptance

    posted = env_store().suggestions()
    tables = {"repository": acceptance(posted, lambda s: s.repo),
              "model": acceptance(posted, lambda s: s.model)}
    if output_format == "json":
        click.echo(json.dumps(tables, indent=2))
        return
    if not posted:
        click.echo("no suggestions posted yet")
        return
    columns = ["posted", *OUTCOMES, "pending"]
    for title, rows in tables.items():
        width = max(len(title), *(len(r["group"]) for r in rows))
        click.echo(f"{title:<{width}}  " + "  ".join(f"{c:>7}" for c in columns) + "  acceptance")
        for row in rows:
            rate = "-" if row["acceptance"] is None else f"{row['acceptance']:.1%}"
            counts = "  ".join(f"{row[c]:>7}" for c in columns)
            click.echo(f"{row['group']:<{width}}  {counts}  {rate:>10}")
        click.echo()


REFUSED_ON_PURPOSE = (400, 413)
"""The service's answers to deliveries it will refuse again (malformed, too large)."""


@cli.command()
@click.option("--hours", default=24, show_default=True, type=click.IntRange(1, 72),
              help="How far back to look (GitHub redelivers deliveries of the last three days).")
@click.option("--redeliver", is_flag=True, help="Ask GitHub to send each failed delivery again.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1),
              help="Send at most this many again.")
@click.option("--pace", default=1.0, show_default=True, type=click.FloatRange(0),
              help="Seconds between two requests to send again (GitHub limits how fast an App writes).")
def deliveries(hours: int, redeliver: bool, limit: int, pace: float) -> None:
    """The App's webhook deliveries that no attempt delivered (the service was down, slow or
    answered an error), from GitHub's log of them; --redeliver has GitHub send them again, and
    the service takes each once. Deliveries the service refused on purpose (400: malformed, 413:
    too large) are listed but not sent again. Reads GITHUB_APP_ID, GITHUB_APP_PRIVATE_KEY (or
    GITHUB_APP_PRIVATE_KEY_PATH) and GITHUB_API_URL."""
    import time
    from datetime import UTC, datetime, timedelta

    from revisor.bot.config import GitHubSettings, read_env
    from revisor.bot.github import app_integration, failed_deliveries
    from revisor.bot.github import redeliver as send_again

    integration = app_integration(read_env(GitHubSettings))
    sent = 0
    with github_errors("are GITHUB_APP_ID and its key right?"):
        failed = failed_deliveries(integration, datetime.now(UTC) - timedelta(hours=hours))
        try:
            for d in failed:
                event = d["event"] + (f"/{d['action']}" if d.get("action") else "")
                refused = d["status_code"] in REFUSED_ON_PURPOSE
                note = "  (refused on purpose: not sent again)" if redeliver and refused else ""
                click.echo(f"{d['guid']}  {event}  {d['status_code']} {d['status']}  {d['delivered_at']}"
                           + note)
                if redeliver and not refused and sent < limit:
                    time.sleep(pace if sent else 0)
                    send_again(integration, d["id"])
                    sent += 1
        finally:  # a rate limit part-way still says how many went out
            if redeliver:
                click.echo(f"{sent} of {len(failed)} failed deliveries of the last {hours} h sent again")
    if not redeliver:
        click.echo(f"{len(failed)} deliver{'y' if len(failed) == 1 else 'ies'} of the last {hours} h failed")


@cli.command()
@model_options
def action(**model) -> None:
    """Handle the event of a GitHub Actions run (see action.yml); reads GITHUB_EVENT_NAME,
    GITHUB_EVENT_PATH, GITHUB_REPOSITORY, GITHUB_API_URL and INPUT_TOKEN / GITHUB_TOKEN."""
    from revisor.bot.service import configure_logging, run_action

    settings = model_settings(**model)
    configure_logging()
    click.echo(run_action(dict(os.environ), settings))


def interrupt(signum, frame) -> None:
    raise Interrupted(signal.Signals(signum).name)


def main() -> None:
    # SIGTERM and SIGINT end Revisor through the `finally` blocks that close the engines: killed
    # outright, it would leave vLLM's engine process running.
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)
    try:
        cli.main(standalone_mode=False)
    except (Interrupted, click.exceptions.Abort):
        click.echo("revisor: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except RevisorError as error:
        click.echo(f"revisor: {error}", err=True)
        sys.exit(1)
    except OSError as error:  # an output that cannot be written, a disk that is full
        where = f"{error.filename}: " if error.filename else ""
        click.echo(f"revisor: {where}{error.strerror or error}", err=True)
        sys.exit(1)
    finally:
        # Interrupted while vLLM's engine was starting, no engine object owns its process yet.
        for child in multiprocessing.active_children():
            child.terminate()

