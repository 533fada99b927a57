"""The webhook service: verify, store, answer within GitHub's 10 seconds; workers do the rest."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import threading
from collections.abc import Callable, Sequence

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from starlette.background import BackgroundTask

from revisor.bot.events import malformed
from revisor.bot.handlers import wanted
from revisor.bot.jobs import JobStore
from revisor.bot.metrics import REGISTRY, JobCounts

log = logging.getLogger("revisor.webhooks")
REQUIRED_HEADERS = ("X-GitHub-Event", "X-GitHub-Delivery")


def valid_signature(secret: str, body: bytes, header: str | None) -> bool:
    """`X-Hub-Signature-256` checked in constant time."""
    if not header or not header.startswith("sha256="):
        return False
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    # As bytes: compare_digest refuses a str with characters outside ASCII (a forged header may hold them).
    return hmac.compare_digest(expected.encode(), header.encode("utf-8", "surrogateescape"))


class Forwarded:
    """Another registry's metrics, collected into this one."""

    def __init__(self, registry: CollectorRegistry):
        self.source = registry

    def collect(self):
        yield from self.source.collect()


class Metrics:
    """This service's deliveries and the job store; then the work of the process's workers."""

    def __init__(self, store: JobStore):
        self.registry = CollectorRegistry()
        self.received = Counter("revisor_deliveries_received", "Webhook deliveries by outcome",
                                ["outcome"], registry=self.registry)
        self.registry.register(JobCounts(store))
        self.registry.register(Forwarded(REGISTRY))

    def render(self) -> bytes:
        return generate_latest(self.registry)


async def bounded_body(request: Request, limit: int) -> bytes | None:
    """The body, read only up to `limit` bytes (None beyond): a chunked body announces no length."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(secret: str, store: JobStore, max_payload_bytes: int = 10 * 2**20,
               workers: Sequence[threading.Thread] = (), metrics_route: bool = True,
               acknowledge: Callable[[str, dict], None] | None = None,
               body_seconds: float = 10.0) -> FastAPI:
    """The service; `workers` are this process's worker threads, which /healthz watches. Without
    `metrics_route`, /metrics is not served here: serve `app.state.metrics.registry` on a port
    that is not published (`revisor serve --metrics-port`). `acknowledge(event, payload)` runs
    after the answer to each newly stored delivery (a reaction on a comment that asked). A body
    not all received `body_seconds` after its headers is refused (408): a sender that stalls must
    not hold a connection for good."""
    if not secret:
        raise ValueError("a webhook secret is required")
    app = FastAPI(title="Revisor webhooks", docs_url=None, redoc_url=None, openapi_url=None)
    metrics = app.state.metrics = Metrics(store)

    def answer(status: int, outcome: str, delivery: str | None = None,
               then: BackgroundTask | None = None) -> Response:
        metrics.received.labels(outcome).inc()
        log.info("%s", outcome, extra={"delivery_id": delivery or "-"})
        return Response(json.dumps({"status": outcome}), status_code=status, media_type="application/json",
                        background=then)

    @app.get("/healthz")
    def healthz() -> Response:
        dead = sum(not thread.is_alive() for thread in workers)
        if dead:
            return Response(json.dumps({"status": "unhealthy", "dead_workers": dead}), status_code=503,
                            media_type="application/json")
        return Response(json.dumps({"status": "ok"}), media_type="application/json")

    if metrics_route:
        @app.get("/metrics")
        def prometheus() -> Response:
            return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.post("/api/github/webhooks")
    async def webhook(request: Request) -> Response:
        declared = request.headers.get("content-length", "0")
        if not declared.isdigit() or int(declared) > max_payload_bytes:
            return answer(413, "payload too large")
        try:
            async with asyncio.timeout(body_seconds):
                body = await bounded_body(request, max_payload_bytes)
        except TimeoutError:
            return answer(408, "body not received in time")
        if body is None:
            return answer(413, "payload too large")
        if not valid_signature(secret, body, request.headers.get("X-Hub-Signature-256")):
            return answer(401, "bad signature")
        if any(not request.headers.get(h) for h in REQUIRED_HEADERS):
            return answer(400, "missing GitHub headers")
        event, delivery = request.headers["X-GitHub-Event"], request.headers["X-GitHub-Delivery"]
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested past Python's limit
            return answer(400, "malformed JSON", delivery)
        if not isinstance(payload, dict):
            return answer(400, "malformed JSON", delivery)
        if not wanted(event, payload):
            return answer(200, "ignored", delivery)
        if problem := malformed(event, payload):
            log.warning("malformed %s delivery: %s", event, problem, extra={"delivery_id": delivery})
            return answer(400, "malformed payload", delivery)
        if not await run_in_threadpool(store.enqueue, delivery, event, body):
            return answer(200, "duplicate delivery", delivery)
        then = BackgroundTask(acknowledge, event, payload) if acknowledge else None
        return answer(202, "accepted", delivery, then)

    return app
