"""Putting the bot together for `revisor serve`, `revisor worker` and `revisor action`."""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from github import Github

from revisor.bot.config import GitHubSettings, ServiceSettings, read_env
from revisor.bot.events import malformed
from revisor.bot.github import PullRequestAPI, app_bot_login, app_client, app_integration, react, token_client
from revisor.bot.handlers import Handlers, ReviewContext, acknowledged_at_once, field, wanted
from revisor.bot.jobs import JobStore
from revisor.bot.metrics import MeteredEngine
from revisor.bot.worker import Worker, pull_request_number
from revisor.model.compose import build_engine, build_reviser
from revisor.model.errors import RevisorError
from revisor.model.reviser import Reviser
from revisor.model.settings import ModelSettings

log = logging.getLogger("revisor.webhooks")


class DeliveryIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "delivery_id"):
            record.delivery_id = "-"
        return True


def configure_logging(level: int = logging.INFO) -> None:
    """Structured lines: every one carries the delivery id it concerns ("-" for none)."""
    handler = logging.StreamHandler()
    handler.addFilter(DeliveryIdFilter())
    handler.setFormatter(logging.Formatter(
        '{"time": "%(asctime)s", "level": "%(levelname)s", "logger": "%(name)s", '
        '"delivery_id": %(delivery_json)s, "message": %(message_json)s}'))
    handler.addFilter(_JsonMessage())
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.getLogger("github").handlers.clear()  # PyGithub's own plain handler: each line once, as JSON
    for chatty in ("httpx", "httpx2"):  # a line for every request to the model server
        logging.getLogger(chatty).setLevel(max(level, logging.WARNING))


class _JsonMessage(logging.Filter):
    """The message and the delivery id as JSON strings: a sender chooses the id (a header), and
    quotes in it must not add fields to the line."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.message_json = json.dumps(record.getMessage())
        record.delivery_json = json.dumps(str(record.delivery_id))
        return True


def build_handlers(model: ModelSettings, bot_name: str, adapters: tuple[str, ...] = ()) -> Handlers:
    """Handlers with one engine per adapter, shared by every prompt strategy a repository may
    choose; `adapters` are the LoRA modules of the openai engine's server repositories may choose."""
    engines = {None: MeteredEngine(build_engine(model))}
    building = threading.Lock()  # worker threads asking at once get one engine and one index

    def reviser(strategy: str, adapter: str | None) -> Reviser:
        with building:
            return built(strategy, adapter)

    @functools.cache
    def built(strategy: str, adapter: str | None) -> Reviser:
        if adapter is not None and adapter not in adapters:
            raise RevisorError(f"adapter {adapter!r} in .github/revisor.yml is not offered by this "
                               f"service (REVISOR_ADAPTERS: {', '.join(adapters) or 'none'})")
        if adapter is not None and model.engine != "openai":
            raise RevisorError("choosing an adapter per repository needs the openai engine")
        settings = model.model_copy(update={"strategy": strategy, "adapter": adapter or model.adapter})
        if adapter not in engines:
            engines[adapter] = MeteredEngine(build_engine(settings))
        return build_reviser(settings, engines[adapter])

    def close() -> None:
        for each in engines.values():
            each.close()

    return Handlers(reviser, engines[None].description, bot_name, model.strategy, close)


@functools.cache
def installation_clients(github: GitHubSettings) -> Callable[[int], Github]:
    """The App's clients, one per installation, shared by the service's reactions and its workers."""
    app_id, private_key = github.require_app()

    @functools.lru_cache(maxsize=256)
    def client(installation: int) -> Github:
        """One client per installation: its token is fetched once and renewed when it expires,
        not fetched again for every job."""
        return app_client(github.api_url, app_id, private_key, installation)

    return client


def acknowledger(github: GitHubSettings, bot_name: str) -> Callable[[str, dict], None]:
    """What `revisor serve` does once it has stored a delivery in which a person asked Revisor by
    name: an 👀 reaction on their comment at once, however busy the workers are."""
    client = installation_clients(github)

    def acknowledge(event: str, payload: dict) -> None:
        installation = field(payload, "installation", "id")
        if not acknowledged_at_once(event, payload, bot_name):
            return
        kind = "pulls" if event == "pull_request_review_comment" else "issues"
        try:
            react(client(installation).requester, payload["repository"]["full_name"], kind,
                  payload["comment"]["id"])
        except Exception as error:  # noqa: BLE001 - a reaction is a courtesy: the job goes on
            log.warning("could not react to the comment that asked: %s", error)

    return acknowledge


def app_api(github: GitHubSettings) -> Callable[[dict], PullRequestAPI]:
    client = installation_clients(github)
    login = functools.cache(lambda: app_bot_login(app_integration(github)))  # asked once, at the first job

    def open_api(payload: dict) -> PullRequestAPI:
        installation = (payload.get("installation") or {}).get("id")
        if installation is None:
            raise RevisorError("the delivery names no installation: is Revisor installed as a GitHub App?")
        return PullRequestAPI.open(client(installation), payload["repository"]["full_name"],
                                   pull_request_number(payload), login())

    return open_api


@dataclass
class WorkerPool:
    """Worker threads sharing one engine (built on the first job)."""

    threads: list[threading.Thread]
    stop: threading.Event
    handlers: list[Handlers]

    def shutdown(self, timeout_s: float = 30.0) -> None:
        """Take no new job, give running ones `timeout_s` to end, then close the engine, so no
        engine process outlives this one."""
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout_s)
        for handlers in self.handlers:
            handlers.close()


def start_workers(service: ServiceSettings, github: GitHubSettings, model: ModelSettings, store: JobStore,
                  count: int) -> WorkerPool:
    shared: list[Handlers] = []
    lock = threading.Lock()

    def handlers() -> Handlers:
        with lock:
            if not shared:
                shared.append(build_handlers(model, service.bot_name, service.adapters))
            return shared[0]

    pool = WorkerPool([], threading.Event(), shared)
    for _ in range(count):
        worker = Worker(store, handlers, app_api(github), service.lease_seconds, service.keep_days * 86400)
        thread = threading.Thread(target=worker.run_forever, args=(pool.stop,), daemon=True)
        thread.start()
        pool.threads.append(thread)
    return pool


def run_action(env: dict[str, str], model: ModelSettings) -> str:
    """`revisor action`: one event of a GitHub Actions run, handled like a webhook delivery."""
    missing = [k for k in ("GITHUB_EVENT_NAME", "GITHUB_EVENT_PATH", "GITHUB_REPOSITORY") if not env.get(k)]
    if missing:
        raise RevisorError(f"not in a GitHub Actions run: {', '.join(missing)} unset")
    token = env.get("INPUT_TOKEN") or env.get("GITHUB_TOKEN")
    if not token:
        raise RevisorError("no token: pass the action's `token` input (default ${{ github.token }})")
    event = env["GITHUB_EVENT_NAME"]
    payload = json.loads(Path(env["GITHUB_EVENT_PATH"]).read_text())
    if not wanted(event, payload):
        return f"nothing to do for {event}/{payload.get('action')}"
    if problem := malformed(event, payload, from_app=False):
        raise RevisorError(f"{env['GITHUB_EVENT_PATH']}: not a {event} event GitHub sends ({problem})")
    client = token_client(read_env(GitHubSettings).api_url, token)
    api = PullRequestAPI.open(client, env["GITHUB_REPOSITORY"], pull_request_number(payload))
    bot_name = read_env(ServiceSettings).bot_name
    logger = logging.LoggerAdapter(logging.getLogger("revisor.action"),
                                   {"delivery_id": env.get("GITHUB_RUN_ID", "action")})
    ctx = ReviewContext(env.get("GITHUB_RUN_ID", "action"), event, payload, api, logger)
    if acknowledged_at_once(event, payload, bot_name):
        ctx.acknowledge()  # before the model loads: the person sees at once that an answer follows
    handlers = build_handlers(model, bot_name)
    try:
        return handlers.handle(ctx)
    finally:
        handlers.close()  # the Action must end once it has answered
