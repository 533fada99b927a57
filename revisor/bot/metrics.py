"""Prometheus metrics of the work behind the webhooks, one registry per process: `revisor serve`
adds them to its /metrics, a `revisor worker` process serves them on its --metrics-port."""

from __future__ import annotations

import time
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from revisor.bot.jobs import JobStore
from revisor.model.engines.base import ChatRequest, Completion, Engine

REGISTRY = CollectorRegistry()
JOBS = Counter("revisor_jobs_processed", "Jobs run by this process, by event and result (done or error)",
               ["event", "result"], registry=REGISTRY)
MODEL_SECONDS = Histogram("revisor_model_request_seconds", "Time of one call to the model",
                          buckets=(0.25, 0.5, 1, 2, 5, 10, 20, 40, 80, 160), registry=REGISTRY)
MODEL_TOKENS = Counter("revisor_model_tokens", "Tokens through the model, by kind (prompt or output)",
                       ["kind"], registry=REGISTRY)
SUGGESTIONS = Counter("revisor_suggestions", "Revisions by what became of them: posted as suggestions, "
                      "noted in a review body (no placeable lines), held back (below the confidence "
                      "threshold), or skipped (no revision)",
                      ["outcome"], registry=REGISTRY)
SUGGESTION_OUTCOMES = Counter("revisor_suggestion_outcomes", "Posted suggestions by what the pull request "
                              "did with them: applied (committed as suggested), changed (those lines "
                              "rewritten otherwise) or left (closed with them as they were)",
                              ["outcome"], registry=REGISTRY)
GITHUB_ERRORS = Counter("revisor_github_api_errors", "Error answers of the GitHub API, retried or not, "
                        "by HTTP status", ["status"], registry=REGISTRY)


class JobCounts:
    """Stored deliveries by status (queue depth: `queued`), read from the store at each scrape."""

    def __init__(self, store: JobStore):
        self.store = store

    def collect(self):
        family = GaugeMetricFamily("revisor_jobs", "Stored deliveries by status", labels=["status"])
        counts = self.store.counts()
        for status in ("queued", "running", "done", "failed"):
            family.add_metric([status], counts.get(status, 0))
        yield family


class MeteredEngine:
    """An engine whose calls are timed and whose tokens are counted."""

    def __init__(self, engine: Engine):
        self.engine = engine

    @property
    def description(self) -> str:
        return self.engine.description

    def generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        started = time.perf_counter()
        completions = self.engine.generate(requests)
        MODEL_SECONDS.observe(time.perf_counter() - started)
        MODEL_TOKENS.labels("prompt").inc(sum(c.prompt_tokens for c in completions))
        MODEL_TOKENS.labels("output").inc(sum(c.output_tokens for c in completions))
        return completions

    def close(self) -> None:
        self.engine.close()
