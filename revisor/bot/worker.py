"""Workers claim stored deliveries and run their handlers; a dead worker's job is claimed again."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from github import GithubException
from openai import BadRequestError

from revisor.bot.github import RETRIED_STATUSES
from revisor.bot.handlers import Handlers, ReviewContext
from revisor.bot.jobs import Job, JobStore, backoff_seconds, locked
from revisor.bot.metrics import GITHUB_ERRORS, JOBS
from revisor.model.errors import RevisorError, TransientError

log = logging.getLogger("revisor.worker")


def retry_after_seconds(error: Exception) -> float | None:
    """How long GitHub asked to wait, from an error's `Retry-After` or rate-limit reset."""
    headers = {k.lower(): v for k, v in ((getattr(error, "headers", None) or {}).items())}
    if str(headers.get("retry-after", "")).isdigit():
        return float(headers["retry-after"])
    if headers.get("x-ratelimit-remaining") == "0" and str(headers.get("x-ratelimit-reset", "")).isdigit():
        return max(0.0, float(headers["x-ratelimit-reset"]) - time.time())
    return None


PERMANENT_STATUSES = (400, 404, 410, 422)
"""GitHub's answers that the same request will get again: a pull request or file gone, a request
GitHub refuses as it stands."""


def permanent(error: Exception) -> bool:
    """Whether running the job again would meet the same error: a bad `.github/revisor.yml`, a
    pull request GitHub no longer has, a prompt the model server refuses (400)."""
    if isinstance(error, TransientError):
        return False
    if isinstance(error, RevisorError | BadRequestError):
        return True
    return isinstance(error, GithubException) and error.status in PERMANENT_STATUSES


def pull_request_number(payload: dict) -> int:
    return (payload.get("pull_request") or payload.get("issue") or {})["number"]


PURGE_EVERY_S = 3600.0


class Worker:
    def __init__(self, store: JobStore, handlers: Callable[[], Handlers], open_api: Callable[[dict], object],
                 lease_seconds: float = 120.0, keep_seconds: float | None = None):
        """`handlers` is called once, on the first job (so the model loads after the service is up);
        `open_api(payload)` gives the pull request's API for a delivery. Running for good, the
        worker forgets deliveries that finished more than `keep_seconds` ago, once an hour."""
        self.store, self._make_handlers, self.open_api = store, handlers, open_api
        self.lease_seconds, self.keep_seconds = lease_seconds, keep_seconds
        self._handlers: Handlers | None = None

    def run_once(self) -> bool:
        """Process one job, if there is one; False when the queue is empty."""
        job = self.store.claim(self.lease_seconds)
        if job is None:
            return False
        logger = logging.LoggerAdapter(log, {"delivery_id": job.delivery_id})
        stop = threading.Event()
        heartbeat = threading.Thread(target=self._keep_lease, args=(job, stop), daemon=True)
        heartbeat.start()
        try:
            if self._handlers is None:
                self._handlers = self._make_handlers()
            api = self.open_api(job.payload)
            ctx = ReviewContext(job.delivery_id, job.event, job.payload, api, logger,  # type: ignore[arg-type]
                                lambda key: locked(self.store, key, self.lease_seconds), self.store)
            outcome = self._handlers.handle(ctx)
        except Exception as error:  # noqa: BLE001 - recorded on the job
            if isinstance(error, GithubException) and error.status not in RETRIED_STATUSES:
                GITHUB_ERRORS.labels(str(error.status)).inc()  # the retry policy counted the others
            if permanent(error):
                logger.error("job failed for good, nothing will change by retrying it: %s", error)
                JOBS.labels(job.event, "error").inc()
                self.store.finish(job, f"{type(error).__name__}: {error}", retry=False)
                return True
            delay = backoff_seconds(job.attempts, retry_after_seconds(error))
            logger.exception("job failed (attempt %d); next attempt in %.0f s", job.attempts, delay)
            JOBS.labels(job.event, "error").inc()
            self.store.finish(job, f"{type(error).__name__}: {error}", delay=delay)
        else:
            logger.info("%s: %s", job.event, outcome)
            JOBS.labels(job.event, "done").inc()
            self.store.finish(job)
        finally:
            stop.set()
            heartbeat.join()
        return True

    def _keep_lease(self, job: Job, stop: threading.Event) -> None:
        while not stop.wait(self.lease_seconds / 3):
            try:
                self.store.extend(job, self.lease_seconds)
            except Exception:  # noqa: BLE001 - the store is down a moment: try again next beat
                log.exception("could not extend the lease of %s", job.delivery_id)

    def run_forever(self, stop: threading.Event, idle_seconds: float = 0.5,
                    error_seconds: float = 5.0) -> None:
        """Run jobs until `stop`; an error of the store (a Redis restart, a locked database) is
        logged and waited out, never the end of the worker."""
        next_purge = 0.0
        while not stop.is_set():
            try:
                if self.keep_seconds is not None and time.monotonic() >= next_purge:
                    if purged := self.store.purge(time.time() - self.keep_seconds):
                        log.info("forgot %d deliveries finished over %.1f days ago", purged,
                                 self.keep_seconds / 86400)
                    next_purge = time.monotonic() + PURGE_EVERY_S
                busy = self.run_once()
            except Exception:  # noqa: BLE001
                log.exception("the job store failed; trying again in %.0f s", error_seconds)
                stop.wait(error_seconds)
                continue
            if not busy:
                stop.wait(idle_seconds)
