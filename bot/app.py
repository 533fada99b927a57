"""The webhook service: verify, store, answer within GitHub's 10 seconds; workers do the rest."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

from bot.handlers import wanted
from bot.jobs import JobStore
from bot.metrics import REGISTRY, JobCounts

log = logging.getLogger("revisor.webhooks")
REQUIRED_HEADERS = ("X-GitHub-Event", "X-GitHub-Delivery")


def valid_signature(secret: str, body: bytes, header: str | None) -> bool:
    """`X-Hub-Signature-256` checked in constant time."""
    if not header or not header.startswith("sha256="):
        return False
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header)


class Metrics:
    """This service's deliveries and the job store; then the work of the process's workers."""

    def __init__(self, store: JobStore):
        self.registry = CollectorRegistry()
        self.received = Counter("revisor_deliveries_received", "Webhook deliveries by outcome",
                                ["outcome"], registry=self.registry)
        self.registry.register(JobCounts(store))

    def render(self) -> bytes:
        return generate_latest(self.registry) + generate_latest(REGISTRY)


def create_app(secret: str, store: JobStore, max_payload_bytes: int = 10 * 2**20) -> FastAPI:
    if not secret:
        raise ValueError("a webhook secret is required")
    app = FastAPI(title="Revisor webhooks", docs_url=None, redoc_url=None)
    metrics = Metrics(store)

    def answer(status: int, outcome: str, delivery: str | None = None) -> Response:
        metrics.received.labels(outcome).inc()
        log.info("%s", outcome, extra={"delivery_id": delivery or "-"})
        return Response(json.dumps({"status": outcome}), status_code=status, media_type="application/json")

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.post("/api/github/webhooks")
    async def webhook(request: Request) -> Response:
        size = int(request.headers.get("content-length") or 0)
        if size > max_payload_bytes:
            return answer(413, "payload too large")
        body = await request.body()
        if len(body) > max_payload_bytes:
            return answer(413, "payload too large")
        if not valid_signature(secret, body, request.headers.get("X-Hub-Signature-256")):
            return answer(401, "bad signature")
        if any(not request.headers.get(h) for h in REQUIRED_HEADERS):
            return answer(400, "missing GitHub headers")
        event, delivery = request.headers["X-GitHub-Event"], request.headers["X-GitHub-Delivery"]
        try:
            payload = json.loads(body)
        except ValueError:
            return answer(400, "malformed JSON", delivery)
        if not isinstance(payload, dict):
            return answer(400, "malformed JSON", delivery)
        if not wanted(event, payload):
            return answer(200, "ignored", delivery)
        if not await run_in_threadpool(store.enqueue, delivery, event, body):
            return answer(200, "duplicate delivery", delivery)
        return answer(202, "accepted", delivery)

    return app
