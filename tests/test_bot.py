"""The bot's parts against real servers: the webhook service over HTTP, the SQLite job store, and
PyGithub against a local server that behaves as GitHub documents. The model is scripted here;
tests/test_bot_e2e.py runs the embedded one."""

import json
import logging
import os
import socket
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from github import GithubException

from revisor.bot.app import create_app, valid_signature
from revisor.bot.config import RepoConfig
from revisor.bot.github import PullRequestAPI, app_client
from revisor.bot.handlers import Handlers, ReviewContext, wanted
from revisor.bot.jobs import MAX_ATTEMPTS, RedisJobStore, SQLiteJobStore, backoff_seconds, locked
from revisor.bot.metrics import REGISTRY
from revisor.bot.placement import fingerprint, head_marker, marker, unmarked
from revisor.bot.worker import Worker, retry_after_seconds
from revisor.model.errors import RevisorError
from revisor.model.prompts import ZeroShot
from revisor.model.reviser import Reviser
from tests import bot_scenario as s
from tests.conftest import shared_path
from tests.fakes import FakeEngine
from tests.fuzz import fuzzed_deliveries
from tests.github_server import BASE_SHA, ServerThread, create_github_app, new_app_key
from tests.servers import revisor, wait_until

CONTEXT_MANAGER = "```python\nwith open(path, 'w') as f:\n    f.write(json.dumps(settings))\n```"


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path):
    if request.param == "redis":
        return RedisJobStore(request.getfixturevalue("redis_url"))
    return SQLiteJobStore(tmp_path / "jobs.db")


@pytest.fixture
def sqlite_store(tmp_path):
    return SQLiteJobStore(tmp_path / "jobs.db")


@pytest.fixture
def webhooks(store):
    with ServerThread(create_app(s.SECRET, store, max_payload_bytes=200_000)) as url:
        yield url


def post(url, body, headers):
    return httpx.post(f"{url}/api/github/webhooks", content=body, headers=headers, timeout=10)


def test_signature_is_checked_against_the_secret():
    body, headers = s.signed(b'{"a": 1}', "ping", "d1")
    assert valid_signature(s.SECRET, body, headers["X-Hub-Signature-256"])
    assert not valid_signature(s.SECRET, body + b" ", headers["X-Hub-Signature-256"])
    assert not valid_signature("another-secret-value", body, headers["X-Hub-Signature-256"])
    assert not valid_signature(s.SECRET, body, None)
    with pytest.raises(ValueError):
        create_app("", SQLiteJobStore(":memory:"))


def test_webhook_answers_as_documented_and_stores_each_delivery_once(webhooks, store):
    body, headers = s.signed(s.review_comment_payload(), "pull_request_review_comment", "delivery-1")
    assert post(webhooks, body, headers).status_code == 202
    assert post(webhooks, body, headers).status_code == 200  # a redelivery
    assert post(webhooks, body, {**headers, "X-GitHub-Delivery": "replayed"}).status_code == 200
    assert store.counts() == {"queued": 1}
    assert post(webhooks, body, {**headers, "X-Hub-Signature-256": "sha256=" + "0" * 64}).status_code == 401
    unsigned = {k: v for k, v in headers.items() if k != "X-Hub-Signature-256"}
    assert post(webhooks, body, unsigned).status_code == 401
    assert post(webhooks, *s.signed(b"{not json", "ping", "d2")).status_code == 400
    no_event = {k: v for k, v in s.signed(b"{}", "ping", "d3")[1].items() if k != "X-GitHub-Event"}
    assert post(webhooks, b"{}", no_event).status_code == 400
    assert post(webhooks, *s.signed(s.fixture_payload("ping/payload.json"), "ping", "d4")).status_code == 200
    from_bot = s.review_comment_payload(sender="Bot")
    assert post(webhooks, *s.signed(from_bot, "pull_request_review_comment", "d5")).status_code == 200
    assert post(webhooks, *s.signed(b"{" + b" " * 300_000 + b"}", "ping", "d6")).status_code == 413
    assert store.counts() == {"queued": 1}
    assert httpx.get(f"{webhooks}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{webhooks}/openapi.json").status_code == 404  # no map of the service
    metrics = httpx.get(f"{webhooks}/metrics").text
    assert 'revisor_deliveries_received_total{outcome="accepted"} 1.0' in metrics
    assert 'revisor_deliveries_received_total{outcome="bad signature"} 2.0' in metrics
    assert 'revisor_jobs{status="queued"} 1.0' in metrics


def test_metrics_can_leave_the_webhook_port_for_a_port_of_their_own(sqlite_store):
    from prometheus_client import start_http_server

    from tests.servers import free_port

    app = create_app(s.SECRET, sqlite_store, metrics_route=False)
    port = free_port()
    start_http_server(port, addr="127.0.0.1", registry=app.state.metrics.registry)
    with ServerThread(app) as url:
        delivery = s.signed(s.review_comment_payload(), "pull_request_review_comment", "m1")
        assert post(url, *delivery).status_code == 202
        assert httpx.get(f"{url}/metrics").status_code == 404
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    assert 'revisor_deliveries_received_total{outcome="accepted"} 1.0' in metrics
    assert 'revisor_jobs{status="queued"} 1.0' in metrics
    assert "revisor_suggestions_total" in metrics  # the workers' metrics too


def counting_reads(app, read: list[int]):
    """The ASGI app, counting the body bytes it reads into `read[0]`."""
    async def counted(scope, receive, send):
        async def receive_counted():
            message = await receive()
            read[0] += len(message.get("body", b""))
            return message
        await app(scope, receive_counted, send)
    return counted


def test_a_chunked_body_is_read_only_up_to_the_limit(sqlite_store):
    read = [0]
    app = create_app(s.SECRET, sqlite_store, max_payload_bytes=200_000)
    with ServerThread(counting_reads(app, read)) as url:
        def chunks():  # no Content-Length: the service must stop reading at its limit
            for _ in range(300):
                yield b" " * 10_000

        chunked = httpx.post(f"{url}/api/github/webhooks", content=chunks(), timeout=10,
                             headers={"X-GitHub-Event": "ping", "X-GitHub-Delivery": "c1"})
    assert chunked.status_code == 413
    # Past the limit by at most what uvicorn buffers before it pauses reading (64 KiB, and a read).
    assert 200_000 < read[0] <= 200_000 + 2**18, f"read {read[0]:,} of 3,000,000 bytes"
    assert sqlite_store.counts() == {}


def stalled_sender(url: str) -> socket.socket:
    """A delivery whose headers announce 1,000 bytes of body, of which one is sent."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(b"POST /api/github/webhooks HTTP/1.1\r\nHost: revisor\r\nX-GitHub-Event: ping\r\n"
                 b"X-GitHub-Delivery: stalled\r\nContent-Length: 1000\r\n\r\n{")
    return sock


def test_serve_cuts_off_stalled_senders_and_refuses_connections_beyond_its_cap(tmp_path):
    env = {**os.environ, "GITHUB_WEBHOOK_SECRET": s.SECRET, "GITHUB_APP_ID": "1",
           "GITHUB_APP_PRIVATE_KEY": "unused", "REVISOR_DATABASE": str(tmp_path / "jobs.db"),
           "REVISOR_BODY_SECONDS": "2", "REVISOR_MAX_CONNECTIONS": "3"}
    serve = revisor(["serve", "--workers", "0"], env, tmp_path / "serve.log")
    try:
        stalled = [stalled_sender(serve.url) for _ in range(3)]
        time.sleep(0.5)  # all three are being read
        assert post(serve.url, b"{}", {}).status_code == 503  # beyond the cap, answered at once
        for sock in stalled:  # each cut off once its body is late
            assert sock.recv(100).startswith(b"HTTP/1.1 408 "), "a stalled sender held its connection"
            sock.close()
        assert post(serve.url, *s.signed(b"{}", "ping", "after")).status_code == 200  # served again
    finally:
        serve.stop()


def test_hostile_bodies_and_headers_get_a_4xx(webhooks, store):
    body, headers = s.signed(b"{}", "ping", "n1")
    non_ascii = {**headers, "X-Hub-Signature-256": "sha256=caf\u00e9".encode("latin-1")}
    assert post(webhooks, body, non_ascii).status_code == 401
    assert store.counts() == {}


def test_fuzzed_deliveries_never_get_a_5xx_and_the_service_stays_healthy(webhooks):
    statuses = {}
    with httpx.Client(timeout=10) as client:
        for body, headers in fuzzed_deliveries(700, seed=1):
            status = client.post(f"{webhooks}/api/github/webhooks", content=body, headers=headers).status_code
            statuses[status] = statuses.get(status, 0) + 1
    assert all(status < 500 for status in statuses), statuses
    assert {400, 401, 413} <= set(statuses) and (200 in statuses or 202 in statuses)
    assert httpx.get(f"{webhooks}/healthz").json() == {"status": "ok"}


def test_a_comment_of_blank_lines_is_read_in_linear_time():
    payload = s.fixture_payload("issue_comment/created.with-installation.payload.json")
    payload["issue"]["pull_request"] = {"url": "x"}
    payload["comment"]["body"] = "\n" * 65_536 + "lgtm"
    started = time.perf_counter()
    assert not wanted("issue_comment", payload)
    assert time.perf_counter() - started < 1.0  # 6.7 s before: past GitHub's 10 s with a few queued
    payload["comment"]["body"] = "\n" * 65_536 + "  /revisor review"
    assert wanted("issue_comment", payload)


def test_which_events_become_jobs():
    assert wanted("pull_request_review_comment", s.review_comment_payload())
    assert not wanted("pull_request_review_comment", s.review_comment_payload(sender="Bot"))
    edited = {**s.review_comment_payload(), "action": "edited"}
    assert not wanted("pull_request_review_comment", edited)
    for action in ("opened", "reopened", "ready_for_review", "synchronize", "closed"):  # closed: outcomes
        assert wanted("pull_request", s.pull_request_payload(action))
    assert not wanted("pull_request", s.pull_request_payload("labeled"))
    issue = s.fixture_payload("issue_comment/created.payload.json")
    issue["issue"]["pull_request"] = {"url": "x"}
    issue["comment"]["body"] = "/revisor review please"
    assert wanted("issue_comment", issue)
    issue["comment"]["body"] = "looks good"
    assert not wanted("issue_comment", issue)
    for name in ("installation/created.payload.json", "push/with-installation.payload.json"):
        assert not wanted(name.split("/")[0], s.fixture_payload(name))


def test_jobs_are_leased_retried_and_given_up(store):
    assert store.enqueue("a", "pull_request", b'{"x": 1}')
    assert not store.enqueue("a", "pull_request", b'{"x": 1}')
    job = store.claim(lease_seconds=0.2)
    assert (job.delivery_id, job.payload, job.attempts) == ("a", {"x": 1}, 1)
    assert store.claim(lease_seconds=0.2) is None  # leased
    time.sleep(0.3)
    again = store.claim(lease_seconds=0.2)  # the first worker died: its lease ran out
    assert again.attempts == 2
    for _ in range(MAX_ATTEMPTS - 2):
        store.finish(again, "boom")
        again = store.claim(lease_seconds=30)
    store.finish(again, "boom")
    assert store.counts() == {"failed": 1} and store.claim(30) is None


def test_a_failed_job_waits_its_backoff_before_it_runs_again(store):
    store.enqueue("b", "pull_request_review_comment", b"{}")
    store.finish(store.claim(lease_seconds=30), "model server down", delay=0.5)
    assert store.claim(lease_seconds=30) is None and store.counts() == {"queued": 1}
    time.sleep(0.6)
    again = store.claim(lease_seconds=30)
    assert (again.delivery_id, again.attempts) == ("b", 2)
    assert backoff_seconds(1) <= 30 < backoff_seconds(3) and backoff_seconds(2, retry_after=600) == 600
    reset = str(int(time.time()) + 400)
    limited = GithubException(403, {"message": "rate limit"},
                              {"x-ratelimit-remaining": "0", "x-ratelimit-reset": reset})
    assert 395 < retry_after_seconds(limited) <= 400
    assert retry_after_seconds(GithubException(429, {}, {"Retry-After": "90"})) == 90
    assert retry_after_seconds(ValueError("no headers")) is None


def test_a_lock_is_held_however_long_its_holder_takes(store):
    # Renewed every 0.5 s: a busy test machine may delay a renewal by up to a second unnoticed.
    with locked(store, "owner/repo#1", seconds=1.5):
        time.sleep(4.0)  # over twice the lock's time: renewed meanwhile
        assert not store.try_lock("owner/repo#1", "another worker", 1.0)
    assert store.try_lock("owner/repo#1", "another worker", 1.0)  # released at once
    assert not store.try_lock("owner/repo#1", "a third", 1.0)
    time.sleep(1.1)
    assert store.try_lock("owner/repo#1", "a third", 1.0)  # a dead holder's lock runs out


def test_deliveries_finished_long_ago_are_forgotten(store):
    for delivery in ("done", "failed", "waiting"):
        store.enqueue(delivery, "pull_request", json.dumps({"delivery": delivery}).encode())
    store.finish(store.claim(30))
    store.finish(store.claim(30), "boom", retry=False)
    assert store.purge(time.time() - 60) == 0  # finished within the minute: kept
    assert store.counts() == {"done": 1, "failed": 1, "queued": 1}
    assert store.purge(time.time() + 1) == 2
    assert store.counts() == {"queued": 1} and store.failed() == []
    assert store.enqueue("done", "pull_request", b'{"delivery": "done"}')  # forgotten, body and all
    store.finish(store.claim(30))
    store.finish(store.claim(30))
    stop = threading.Event()
    worker = Worker(store, lambda: None, lambda payload: None, 30, keep_seconds=0)
    running = threading.Thread(target=worker.run_forever, args=(stop,))
    running.start()
    try:
        wait_until(lambda: store.counts() == {}, 10)  # a worker forgets them as it starts
    finally:
        stop.set()
        running.join()


def test_failed_jobs_are_listed_and_queued_again(store):
    store.enqueue("f", "pull_request_review_comment", b'{"n": 1}')
    store.finish(store.claim(lease_seconds=30), "bad config", retry=False)
    assert store.counts() == {"failed": 1}
    assert store.failed() == [("f", "pull_request_review_comment", "bad config")]
    assert store.requeue("f") and not store.requeue("f") and not store.requeue("nope")
    assert store.counts() == {"queued": 1} and store.failed() == []
    job = store.claim(lease_seconds=30)
    assert (job.delivery_id, job.attempts, job.payload) == ("f", 1, {"n": 1})


def test_a_job_whose_worker_dies_on_every_attempt_ends_failed(store):
    store.enqueue("d", "pull_request_review_comment", b"{}")
    for attempt in range(1, MAX_ATTEMPTS + 1):
        job = store.claim(lease_seconds=0)  # its worker dies: the lease runs out at once
        assert job.attempts == attempt
        time.sleep(0.01)
    assert store.claim(lease_seconds=0) is None
    assert store.counts() == {"failed": 1}


class FlakyStore(SQLiteJobStore):
    """A store whose first claims fail as a locked database or a restarting Redis do."""

    def __init__(self, path, failures: int):
        super().__init__(path)
        self.failures = failures

    def claim(self, lease_seconds):
        if self.failures:
            self.failures -= 1
            raise sqlite3.OperationalError("database is locked")
        return super().claim(lease_seconds)


def test_a_worker_outlives_store_errors_and_healthz_reports_dead_workers(github, tmp_path):
    gh, key, url = github
    store = FlakyStore(tmp_path / "jobs.db", failures=2)
    store.enqueue("d1", "pull_request_review_comment", json.dumps(s.review_comment_payload()).encode())
    worker = Worker(store, lambda: handlers()[0], lambda payload: open_api(url, key, payload), 30)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run_forever, args=(stop, 0.05, 0.05), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while store.counts() != {"done": 1} and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.counts() == {"done": 1} and thread.is_alive() and store.failures == 0
    dead = threading.Thread(target=lambda: None)
    dead.start()
    dead.join()
    with ServerThread(create_app(s.SECRET, store, workers=[thread, dead])) as service:
        health = httpx.get(f"{service}/healthz")
        assert (health.status_code, health.json()) == (503, {"status": "unhealthy", "dead_workers": 1})
    with ServerThread(create_app(s.SECRET, store, workers=[thread])) as service:
        assert httpx.get(f"{service}/healthz").json() == {"status": "ok"}
    stop.set()
    thread.join(5)


class InThread:
    """A store whose every call runs in one other thread: a second worker thread of a process."""

    def __init__(self, store):
        self.store, self.pool = store, ThreadPoolExecutor(max_workers=1)

    def __getattr__(self, name):
        return lambda *args, **kwargs: self.pool.submit(getattr(self.store, name), *args, **kwargs).result()


@pytest.mark.parametrize("kind", ["sqlite", "redis", "redis, one process"])
def test_a_job_belongs_to_the_worker_holding_its_lease(kind, request, tmp_path):
    def open_store():  # a worker process of its own
        if kind.startswith("redis"):
            return RedisJobStore(request.getfixturevalue("redis_url"))
        return SQLiteJobStore(tmp_path / "jobs.db")

    first = open_store()
    second = InThread(first) if kind == "redis, one process" else open_store()
    assert first.enqueue("d", "pull_request", b"{}")
    mine = first.claim(lease_seconds=0.4)
    assert mine.delivery_id == "d"
    time.sleep(0.25)
    InThread(first).extend(mine, 0.4)  # the heartbeat, from a thread of its own as a worker's is
    time.sleep(0.25)
    assert second.claim(lease_seconds=0.4) is None  # still held
    time.sleep(0.5)
    theirs = second.claim(lease_seconds=0.4)
    assert theirs.attempts == 2  # the first stopped beating: taken over
    first.extend(mine, 30)  # too late: it is the second's now
    first.finish(mine)
    assert second.counts() == {"running": 1}
    time.sleep(0.5)
    assert first.claim(lease_seconds=0.4).attempts == 3  # the late heartbeat did not keep it
    second.finish(theirs, "boom")  # nor may the second settle it now
    assert second.counts() == {"running": 1}


def test_a_lapsed_lease_behind_many_live_ones_is_taken_over(redis_url):
    """XAUTOCLAIM looks at a few pending entries a call: the search goes on where it stopped."""
    holder, other = RedisJobStore(redis_url), RedisJobStore(redis_url)
    for n in range(25):
        holder.enqueue(f"d{n}", "pull_request", f'{{"n": {n}}}'.encode())
    held = [holder.claim(lease_seconds=0.3) for _ in range(25)]
    time.sleep(0.4)
    for job in held[:-1]:  # every heartbeat but the last job's
        holder.extend(job, 30)
    taken = [other.claim(lease_seconds=0.3) for _ in range(5)]
    assert [j.delivery_id for j in taken if j] == ["d24"]


@pytest.fixture
def github():
    gh, key = s.fake_github(config="review_comments: mention\nreview_pull_requests: true\n")
    with ServerThread(create_github_app(gh)) as url:
        yield gh, key, url


def open_api(url, key, payload):
    return PullRequestAPI.open(app_client(url, s.APP_ID, key, payload["installation"]["id"]), s.REPO,
                               (payload.get("pull_request") or payload.get("issue"))["number"])


def handlers(answer=lambda code: CONTEXT_MANAGER):
    engine = FakeEngine(answer)
    return Handlers(lambda strategy, adapter: Reviser(engine, ZeroShot()), "fake-model"), engine


def handle(github, event, payload, handlers_):
    gh, key, url = github
    api = open_api(url, key, payload)
    log = logging.LoggerAdapter(logging.getLogger())
    return handlers_.handle(ReviewContext("d", event, payload, api, log))


def test_review_comment_gets_one_reply_with_a_suggestion_for_exactly_those_lines(github):
    gh = github[0]
    h, engine = handlers()
    outcome = handle(github, "pull_request_review_comment", s.review_comment_payload(), h)
    assert outcome == "replied with a suggestion for app/storage.py:11-13"
    [reply] = s.replies(gh)
    assert reply["body"].startswith("```suggestion\n    with open(path, 'w') as f:\n"
                                    "        f.write(json.dumps(settings))\n```\n")
    assert "Automatic suggestion by Revisor (fake-model, confidence 1.00)" in reply["body"]
    assert "<!-- revisor:" in reply["body"]
    query = engine.requests[0].messages[-2]["content"]
    assert 'f = open(path, "w")' in query and "use a context manager here" in query and "/revise" not in query
    before = "Code just before it (do not repeat it):\n```python\n        return json.load(handle)\n\n\n"
    assert before + "def save_settings(path, settings):\n```" in query
    assert handle(github, "pull_request_review_comment", s.review_comment_payload(), h) == "already answered"
    assert len(s.replies(gh)) == 1
    tokens = [r for r in gh.requests if r[1].endswith("/access_tokens")]
    assert tokens and any(path.endswith("/files") for _, path in gh.requests)


def test_failed_deliveries_are_listed_from_github_and_sent_again(github):
    from datetime import UTC, datetime, timedelta

    from tests.test_cli import revisor

    gh, key, url = github
    now = datetime.now(UTC)

    def attempt(n: int, guid: str, status: int, hours_ago: float) -> dict:
        when = (now - timedelta(hours=hours_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"id": n, "guid": guid, "delivered_at": when, "redelivery": n > 1, "duration": 0.1,
                "status": "OK" if status < 300 else "Invalid HTTP Response: 502", "status_code": status,
                "event": "pull_request_review_comment", "action": "created"}

    gh.hook_deliveries = [attempt(1, "old", 502, 30), attempt(2, "a", 502, 5), attempt(3, "b", 0, 4),
                          attempt(4, "c", 202, 3), attempt(5, "e", 500, 3), attempt(6, "a", 202, 2),
                          attempt(7, "e", 503, 1), attempt(8, "bad", 400, 1), attempt(9, "f", 502, 0.5)]
    # oldest first; "a" went through on its second try; "bad" was refused as malformed
    env = {"GITHUB_APP_ID": s.APP_ID, "GITHUB_APP_PRIVATE_KEY": key, "GITHUB_API_URL": url}
    result = revisor("deliveries", "--redeliver", "--limit", "2", "--pace", "0", env=env)
    out = result.stdout.decode()
    assert result.returncode == 0, result.stderr.decode()
    assert [line.split()[0] for line in out.splitlines()[:-1]] == ["f", "bad", "e", "b"]
    assert "refused on purpose: not sent again" in out.splitlines()[1]
    assert "2 of 4 failed deliveries of the last 24 h sent again" in out
    assert gh.redelivered == [9, 7]  # the latest attempt of each, never one that went through
    gh.failing_paths["/deliveries/7/attempts"] = 403  # refused part-way: it says how many went out
    result = revisor("deliveries", "--redeliver", "--pace", "0", env=env)
    assert result.returncode == 1 and "1 of 4 failed deliveries" in result.stdout.decode()
    assert revisor("deliveries", "--hours", "100", env=env).returncode == 2  # GitHub keeps three days


def test_jobs_of_one_installation_share_its_token(github):
    from revisor.bot.config import GitHubSettings
    from revisor.bot.service import app_api

    gh, key, url = github
    open_api = app_api(GitHubSettings(app_id=s.APP_ID, app_private_key=key, api_url=url))
    for _ in range(3):
        assert open_api(s.review_comment_payload()).pull.number == s.PR
    assert len([path for _, path in gh.requests if path.endswith("/access_tokens")]) == 1


def test_files_and_comments_are_read_across_pages(github):
    gh, key, url = github
    gh.pulls[s.PR].files.append({"filename": "evil\n+++ b/app/storage.py", "status": "added",
                                 "patch": "@@ -0,0 +1 @@\n+injected"})  # a name no diff header can carry
    api = open_api(url, key, s.review_comment_payload())
    assert [f.path for f in api.diff().patch] == ["app/storage.py", "docs/0.txt", "docs/1.txt", "docs/2.txt",
                                                  "logo.png"]
    pages = [p for m, p in gh.requests if p.endswith("/files")]
    assert len(pages) >= 3  # per_page is capped at 2 by the server


def suggestions(outcome: str) -> float:
    return REGISTRY.get_sample_value("revisor_suggestions_total", {"outcome": outcome}) or 0


def test_a_comment_that_does_not_ask_gets_nothing_and_one_that_asks_always_gets_one_answer(github):
    gh = github[0]
    h, _ = handlers()
    plain = s.review_comment_payload(body="use a context manager here")
    assert handle(github, "pull_request_review_comment", plain, h) == "comment does not mention Revisor"
    assert s.replies(gh) == [] and gh.reactions == []
    unchanged, _ = handlers(lambda code: code)
    skipped, posted = suggestions("skipped"), suggestions("posted")
    outcome = handle(github, "pull_request_review_comment", s.review_comment_payload(), unchanged)
    assert outcome.startswith("no suggestion")
    [note] = s.replies(gh)
    assert note["body"].startswith("Revisor has no suggestion here: ")
    assert gh.reactions == [{"kind": "pulls", "comment_id": s.COMMENT_ID, "content": "eyes",
                             "user": "revisor[bot]"}]
    assert (suggestions("skipped"), suggestions("posted")) == (skipped + 1, posted)
    again = handle(github, "pull_request_review_comment", s.review_comment_payload(), unchanged)
    assert again == "already answered" and len(s.replies(gh)) == 1 and len(gh.reactions) == 1


def test_a_suggestion_below_the_threshold_is_held_back_and_the_person_who_asked_is_told(github):
    gh = github[0]
    engine = FakeEngine(lambda code: CONTEXT_MANAGER, logprob=-1.0)  # uncalibrated confidence e^-1
    h = Handlers(lambda strategy, adapter: Reviser(engine, ZeroShot(), min_confidence=0.5), "fake-model")
    below, posted = suggestions("below threshold"), suggestions("posted")
    outcome = handle(github, "pull_request_review_comment", s.review_comment_payload(), h)
    assert outcome == ("no suggestion: no confident suggestion (confidence 0.37, below the threshold "
                       "0.50)")
    [note] = s.replies(gh)
    assert note["body"].startswith("Revisor has no suggestion confident enough to post here: its best "
                                   "answer has confidence 0.37, below the threshold 0.50.")
    assert "```suggestion" not in note["body"]
    assert (suggestions("below threshold"), suggestions("posted")) == (below + 1, posted)

    gh.contents[("master", ".github/revisor.yml")] += "min_confidence: 0.3\n"  # the repository's own
    gh.pulls[s.PR].review_comments.append(s.human_comment(comment_id=s.COMMENT_ID + 1))
    again = s.review_comment_payload(comment_id=s.COMMENT_ID + 1)
    outcome = handle(github, "pull_request_review_comment", again, h)
    assert outcome == "replied with a suggestion for app/storage.py:11-13"
    [reply] = s.replies(gh, s.COMMENT_ID + 1)
    assert "Revisor (fake-model, confidence 0.37)" in reply["body"]
    assert suggestions("posted") == posted + 1
    with pytest.raises(RevisorError, match="min_confidence: Input should be a valid number, not 'high'"):
        RepoConfig.parse("min_confidence: high\n")
    with pytest.raises(RevisorError, match="min_confidence: Input should be less than or equal to 1, not 2"):
        RepoConfig.parse("min_confidence: 2\n")


def test_without_review_comments_all_a_comment_that_does_not_ask_hears_nothing_unless_configured(github):
    gh = github[0]
    gh.contents[("master", ".github/revisor.yml")] = "review_comments: all\n"
    unchanged, _ = handlers(lambda code: code)
    plain = s.review_comment_payload(body="use a context manager here")
    assert handle(github, "pull_request_review_comment", plain, unchanged).startswith("no suggestion")
    assert s.replies(gh) == [] and gh.reactions == []
    gh.contents[("master", ".github/revisor.yml")] += "note_when_no_suggestion: true\n"
    assert handle(github, "pull_request_review_comment", plain, unchanged).startswith("no suggestion")
    assert [r["body"].split(":")[0] for r in s.replies(gh)] == ["Revisor has no suggestion here"]


def test_a_permanent_error_fails_the_job_at_once_with_what_to_change(github, store):
    gh, key, url = github
    gh.contents[("master", ".github/revisor.yml")] = 'include: "src/**"\n'
    store.enqueue("p1", "pull_request_review_comment", json.dumps(s.review_comment_payload()).encode())
    worker = Worker(store, lambda: handlers()[0], lambda payload: open_api(url, key, payload), 30)
    assert worker.run_once() and not worker.run_once()
    assert store.counts() == {"failed": 1}
    [told] = s.replies(gh)  # the reviewer who asked learns what to change
    assert told["body"].startswith("Revisor could not answer: .github/revisor.yml: include: must be a list")
    with pytest.raises(RevisorError, match=r"include: must be a list, e.g. include: \['src/\*\*'\]"):
        RepoConfig.parse('include: "src/**"\n')
    gh.contents[("master", ".github/revisor.yml")] = "include: ['src/**']  # caf\u00e9\n".encode("latin-1")
    store.enqueue("p2", "pull_request_review_comment", json.dumps(s.review_comment_payload(
        comment_id=s.COMMENT_ID + 1)).encode())
    gh.pulls[s.PR].review_comments.append(s.human_comment(comment_id=s.COMMENT_ID + 1))
    assert worker.run_once() and store.counts() == {"failed": 2}
    [told] = s.replies(gh, s.COMMENT_ID + 1)
    assert told["body"].startswith("Revisor could not answer: .github/revisor.yml is not UTF-8 text")


def test_a_model_server_that_is_down_delays_the_job_and_loses_nothing(github, store):
    from revisor.model.engines.base import EngineConfig
    from revisor.model.engines.openai_http import OpenAIEngine

    gh, key, url = github
    down = OpenAIEngine(EngineConfig(model="m", base_url="http://127.0.0.1:9/v1", retries=0, timeout_s=2))
    offline = Handlers(lambda strategy, adapter: Reviser(down, ZeroShot()), "m")
    store.enqueue("m1", "pull_request_review_comment", json.dumps(s.review_comment_payload()).encode())
    assert Worker(store, lambda: offline, lambda payload: open_api(url, key, payload), 30).run_once()
    assert store.counts() == {"queued": 1} and store.failed() == []  # waits its backoff, then again
    assert store.claim(30) is None


def test_only_allowed_authors_get_answers(github):
    gh = github[0]
    h, engine = handlers()
    stranger = s.review_comment_payload()
    stranger["comment"]["author_association"] = "NONE"
    outcome = handle(github, "pull_request_review_comment", stranger, h)
    assert outcome == "author is NONE, not one of allowed_authors in .github/revisor.yml"
    assert s.replies(gh) == [] and engine.requests == []
    gh.contents[("master", ".github/revisor.yml")] += "allowed_authors: [OWNER, NONE]\n"
    assert handle(github, "pull_request_review_comment", stranger, h).startswith("replied")


def test_answers_on_one_pull_request_are_capped(github):
    gh = github[0]
    gh.contents[("master", ".github/revisor.yml")] += "max_answers_per_pull_request: 1\n"
    h, engine = handlers()
    assert handle(github, "pull_request_review_comment", s.review_comment_payload(), h).startswith("replied")
    gh.pulls[s.PR].review_comments.append(s.human_comment(comment_id=78))
    again = handle(github, "pull_request_review_comment", s.review_comment_payload(comment_id=78), h)
    assert again == "max_answers_per_pull_request reached: no more answers on this pull request"
    assert len(engine.requests) == 1 and len(s.replies(gh)) == 1


def two_workers_at_once(github, store) -> None:
    """Two workers run a stored job each, at the same time, the model slow enough that both are
    past their first checks before either posts."""
    _, key, url = github

    def slow_answer(code):
        time.sleep(0.5)
        return CONTEXT_MANAGER

    h, _ = handlers(slow_answer)
    workers = [Worker(store, lambda: h, lambda payload: open_api(url, key, payload), 30) for _ in range(2)]
    threads = [threading.Thread(target=w.run_once) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert store.counts() == {"done": 2}


def test_two_jobs_at_once_never_both_take_the_last_answer_allowed(github, store):
    gh = github[0]
    gh.contents[("master", ".github/revisor.yml")] += "max_answers_per_pull_request: 1\n"
    gh.pulls[s.PR].review_comments.append(s.human_comment(comment_id=78))
    for comment in (s.COMMENT_ID, 78):  # two comments, one answer left
        assert store.enqueue(f"c{comment}", "pull_request_review_comment",
                             json.dumps(s.review_comment_payload(comment_id=comment)).encode())
    two_workers_at_once(github, store)
    assert len(s.replies(gh)) + len(s.replies(gh, 78)) == 1


def test_config_comes_from_the_base_branch_only(github):
    gh, key, url = github
    api = open_api(url, key, s.review_comment_payload())
    assert api.config_text() == gh.contents[("master", ".github/revisor.yml")]
    assert RepoConfig.parse(api.config_text()).review_comments == "mention"  # the head says "all"
    assert [p for m, p in gh.requests if p.endswith("/contents/.github/revisor.yml")]
    del gh.contents[("master", ".github/revisor.yml")]
    assert api.config_text() is None and RepoConfig.parse(api.config_text()) == RepoConfig()
    with pytest.raises(RevisorError, match="unknown setting"):
        RepoConfig.parse("run_shell: true\n")
    assert not RepoConfig.parse("exclude: ['docs/*']\n").wants("docs/a.txt")


def test_pull_request_review_is_one_call_with_placed_suggestions(github):
    gh = github[0]
    h, engine = handlers(lambda code: code + "# revised\n")
    outcome = handle(github, "pull_request", s.pull_request_payload(), h)
    assert outcome.startswith("posted a review with")
    [review] = gh.pulls[s.PR].reviews
    assert review["commit_id"] == s.HEAD and f"<!-- revisor-head:{s.HEAD} -->" in review["body"]
    posts = [p for m, p in gh.requests if m == "POST" and p.endswith("/reviews")]
    assert len(posts) == 1
    suggestions = [c for c in gh.pulls[s.PR].review_comments if c.get("pull_request_review_id")]
    assert {(c["path"], c.get("start_line"), c["line"]) for c in suggestions} == {
        ("app/storage.py", 10, 20), ("docs/0.txt", None, 2), ("docs/1.txt", None, 2), ("docs/2.txt", None, 2)}
    assert handle(github, "pull_request", s.pull_request_payload(), h) == "already reviewed this head"


def test_a_push_while_the_files_are_read_leaves_the_review_on_the_head_it_was_asked_for(github):
    gh = github[0]
    gh.compares[(BASE_SHA, s.HEAD)] = list(gh.pulls[s.PR].files)  # the asked-for head's diff
    pushed = [{"filename": "app/new.py", "status": "added", "patch": "@@ -0,0 +1,1 @@\n+x = 1"}]
    gh.pushes["/files"] = ("f" * 40, pushed)  # lands once the first page of files was read
    h, _ = handlers(lambda code: code + "# revised\n")
    outcome = handle(github, "pull_request", s.pull_request_payload(), h)
    assert outcome == "posted a review with 4 suggestion(s)"
    [review] = gh.pulls[s.PR].reviews
    assert review["commit_id"] == s.HEAD
    suggestions = [c for c in gh.pulls[s.PR].review_comments if c.get("pull_request_review_id")]
    assert {c["path"] for c in suggestions} == {"app/storage.py", "docs/0.txt", "docs/1.txt", "docs/2.txt"}


def test_synchronize_reviews_only_what_changed_since_the_last_reviewed_head(github):
    gh = github[0]
    h, _ = handlers(lambda code: code + "# revised\n")
    handle(github, "pull_request", s.pull_request_payload(), h)
    new_head = "f" * 40
    gh.pulls[s.PR].head_sha = new_head
    gh.compares[(s.HEAD, new_head)] = [f for f in gh.pulls[s.PR].files if f["filename"] == "docs/1.txt"]
    synchronize = s.pull_request_payload("synchronize")
    synchronize["pull_request"]["head"]["sha"] = new_head
    assert handle(github, "pull_request", synchronize, h) == "posted a review with 1 suggestion(s)"
    latest = gh.pulls[s.PR].reviews[-1]
    commented = [c for c in gh.pulls[s.PR].review_comments if c.get("pull_request_review_id") == latest["id"]]
    assert [c["path"] for c in commented] == ["docs/1.txt"]


def test_two_jobs_for_one_comment_at_once_post_one_reply(github, store):
    for delivery in ("first", "second"):  # two deliveries about the same comment
        body = json.dumps({**s.review_comment_payload(), "delivery": delivery}).encode()
        assert store.enqueue(delivery, "pull_request_review_comment", body)
    two_workers_at_once(github, store)
    assert len(s.replies(github[0])) == 1


def test_a_comment_on_an_earlier_commit_revises_that_commits_lines(github):
    gh = github[0]
    earlier = "e" * 40
    shifted = ("@@ -1,3 +1,3 @@\n def save_settings(path, settings):\n-    old = 1\n+    kept = 2\n"
               "     return kept\n")
    gh.compares[(BASE_SHA, earlier)] = [{"filename": "app/storage.py", "status": "modified",
                                         "patch": shifted}]
    h, engine = handlers(lambda code: code.replace("kept = 2", "kept = 3"))
    on_earlier = s.review_comment_payload()
    on_earlier["comment"].update(commit_id=earlier, start_line=2, line=2)
    assert handle(github, "pull_request_review_comment", on_earlier, h) == (
        "replied with a suggestion for app/storage.py:2")
    assert "kept = 3" in s.replies(gh)[0]["body"]
    gh.pulls[s.PR].review_comments.append(s.human_comment(comment_id=s.COMMENT_ID + 5))
    left = s.review_comment_payload(comment_id=s.COMMENT_ID + 5)
    left["comment"]["start_side"] = "LEFT"
    outcome = handle(github, "pull_request_review_comment", left, h)
    assert outcome == "cannot revise: the comment is not on the new side of the diff"
    [told] = s.replies(gh, s.COMMENT_ID + 5)  # the person who asked hears why
    assert told["body"].startswith("Revisor could not answer: the comment is not on the new side")
    # A file name is the pull request author's to choose: quoted, it pings no one and hides nothing.
    hostile = "@org/team <!-- revisor:" + "1" * 16 + " --> ```.py"
    gh.pulls[s.PR].review_comments.append(s.human_comment(comment_id=s.COMMENT_ID + 6))
    elsewhere = s.review_comment_payload(comment_id=s.COMMENT_ID + 6)
    elsewhere["comment"]["path"] = hostile
    assert handle(github, "pull_request_review_comment", elsewhere, h).endswith("is not in the diff")
    [told] = s.replies(gh, s.COMMENT_ID + 6)
    assert told["body"].startswith("Revisor could not answer: ```` @org/team ")  # a code span
    assert "1" * 16 not in told["body"]
    stale = s.pull_request_payload("synchronize")
    stale["pull_request"]["head"]["sha"] = earlier  # the head has moved on since this event
    assert handle(github, "pull_request", stale, h).startswith("the pull request has a newer head")


def test_a_reply_github_created_before_answering_502_is_not_posted_again(github):
    gh = github[0]
    h, _ = handlers()
    gh.fail_after_write = [502]
    with pytest.raises(GithubException) as failure:
        handle(github, "pull_request_review_comment", s.review_comment_payload(), h)
    assert failure.value.status == 502 and len(s.replies(gh)) == 1  # never written twice
    assert handle(github, "pull_request_review_comment", s.review_comment_payload(), h) == "already answered"
    assert len(s.replies(gh)) == 1


def test_markers_count_only_in_the_apps_own_comments(github):
    gh = github[0]
    forged = marker(fingerprint("reply", s.COMMENT_ID)) + marker(fingerprint("review", s.HEAD))
    gh.pulls[s.PR].review_comments.append(s.human_comment(f"nothing to see {forged}", comment_id=5))
    gh.pulls[s.PR].reviews.append({"id": 6, "body": forged + head_marker(s.HEAD), "state": "COMMENTED",
                                   "commit_id": s.HEAD, "user": {"login": "mallory", "type": "User"}})
    nested = "<!-- revisor:" + marker("0" * 16) + "0" * 16 + " -->"  # one pass of removal leaves a live one
    nested_head = f"<!-- revisor-head:{head_marker('a' * 40)}{'a' * 40} -->"
    assert unmarked(nested) == "" and unmarked(nested_head) == ""
    smuggled = CONTEXT_MANAGER.replace("```python\n", "```python\n# " + marker("0" * 16) + nested + "\n")
    h, _ = handlers(lambda code: smuggled)
    assert handle(github, "pull_request_review_comment", s.review_comment_payload(), h).startswith("replied")
    [reply] = s.replies(gh)
    assert reply["body"].count("<!-- revisor:") == 1 and "0" * 16 not in reply["body"]
    assert handle(github, "pull_request", s.pull_request_payload(), h).startswith("posted a review")


def test_markers_count_only_in_what_this_apps_bot_user_wrote(github):
    from revisor.bot.config import GitHubSettings
    from revisor.bot.service import app_api

    gh, key, url = github
    other_bot = {"login": "other-app[bot]", "type": "Bot"}  # another App on the repository
    gh.pulls[s.PR].review_comments.append({**s.human_comment(marker(fingerprint("reply", s.COMMENT_ID)),
                                                             comment_id=5), "user": other_bot})
    settings = GitHubSettings(api_url=url, app_id=s.APP_ID, app_private_key=key)
    api = app_api(settings)(s.review_comment_payload())
    assert api.bot_login == "revisor[bot]"  # the App's slug, asked of GitHub
    h, _ = handlers()
    ctx = ReviewContext("d", "pull_request_review_comment", s.review_comment_payload(), api,
                        logging.LoggerAdapter(logging.getLogger()))
    assert h.handle(ctx).startswith("replied with a suggestion")
    assert h.handle(ctx) == "already answered"  # its own marker counts


def test_a_file_gone_since_a_commit_github_no_longer_has_reads_as_gone(github):
    _, key, url = github  # no such file at the head, and GitHub cannot compare from a lost commit
    api = open_api(url, key, s.review_comment_payload())
    assert api.lines_later("app/gone.py", "e" * 40, s.HEAD) is None


def test_a_422_from_github_keeps_the_comments_in_the_review_body(github):
    gh, key, url = github
    api = open_api(url, key, s.pull_request_payload())
    bad = {"path": "docs/`x`.txt", "line": 90, "side": "RIGHT", "body": "```suggestion\nx\n```"}
    api.review(s.HEAD, "summary", [bad])
    [review] = gh.pulls[s.PR].reviews
    assert "summary" in review["body"] and "```suggestion\nx\n```" in review["body"]
    assert "`` docs/`x`.txt:90-90 ``" in review["body"]  # the name's backticks cannot close the code span
    many = [{**bad, "body": f"```suggestion\n{'x' * 3000}\n```"} for _ in range(30)]  # 90,000 characters
    api.review(s.HEAD, "summary", many)
    longest = gh.pulls[s.PR].reviews[-1]["body"]
    assert len(longest) <= 65_536 and longest.startswith("summary\n\n")
    assert longest.endswith("more proposed revision(s) left out: GitHub takes 65,536 characters at most in "
                            "one review.")


def test_suggestions_github_refused_as_comments_are_not_recorded_as_posted(github, sqlite_store):
    gh, key, url = github
    gh.per_page_cap = 100  # the files are read in one page; then GitHub's diff no longer holds their
    other = [{"filename": "app/other.py", "status": "added", "patch": "@@ -0,0 +1,1 @@\n+x = 1"}]
    gh.pushes["/files"] = (s.HEAD, other)  # lines, so it answers 422 to comments on them
    h, _ = handlers(lambda code: code + "# revised\n")
    payload = s.pull_request_payload()
    ctx = ReviewContext("d", "pull_request", payload, open_api(url, key, payload),
                        logging.LoggerAdapter(logging.getLogger()), ledger=sqlite_store)
    assert h.handle(ctx) == ("posted a review with 4 suggestion(s) in its body: GitHub refused them as "
                             "comments")
    [review] = gh.pulls[s.PR].reviews
    assert review["body"].count("```suggestion") == 4
    assert sqlite_store.suggestions() == []  # no outcome to settle: nothing could be committed


def test_bad_app_credentials_and_server_errors(github):
    gh, key, url = github
    other_key, _ = new_app_key()
    with pytest.raises(GithubException) as failure:
        open_api(url, other_key, s.review_comment_payload())
    assert failure.value.status == 401
    errors = {status: REGISTRY.get_sample_value("revisor_github_api_errors_total", {"status": status}) or 0
              for status in ("502", "503")}
    api = open_api(url, key, s.review_comment_payload())
    gh.fail_next = [502, 503]
    assert api.repo.get_pull(s.PR).number == s.PR  # a read: retried
    for status, before in errors.items():  # and counted for /metrics
        assert REGISTRY.get_sample_value("revisor_github_api_errors_total", {"status": status}) == before + 1


def test_worker_records_failures_and_posts_once_when_a_job_runs_again(github, sqlite_store):
    store = sqlite_store
    gh, key, url = github
    h, _ = handlers()
    payload = s.review_comment_payload()
    body, _ = s.signed(payload, "pull_request_review_comment", "x")
    store.enqueue("x", "pull_request_review_comment", body)
    worker = Worker(store, lambda: h, lambda p: open_api(url, key, p), lease_seconds=30)
    assert worker.run_once() and store.counts() == {"done": 1}
    store._db().execute("UPDATE deliveries SET status = 'queued', lease_until = 0")  # died before recording
    assert worker.run_once() and len(s.replies(gh)) == 1
    broken = Worker(store, lambda: h, lambda p: (_ for _ in ()).throw(RuntimeError("boom")), 30)
    store.enqueue("y", "pull_request_review_comment", body + b" ")
    assert broken.run_once()
    assert store._db().execute("SELECT status, error FROM deliveries WHERE delivery_id='y'").fetchone() == (
        "queued", "RuntimeError: boom")


def test_worker_counts_github_errors_the_retry_policy_did_not(github, sqlite_store):
    def failing(status):
        def open_api(payload):
            raise GithubException(status, {"message": "no"})
        return open_api

    def count(status):
        return REGISTRY.get_sample_value("revisor_github_api_errors_total", {"status": status}) or 0

    h, _ = handlers()
    body, _ = s.signed(s.review_comment_payload(), "pull_request_review_comment", "z")
    before = count("404"), count("502")
    for status in (404, 502):
        sqlite_store.enqueue(f"z{status}", "pull_request_review_comment", body + b" " * status)
        assert Worker(sqlite_store, lambda: h, failing(status), 30).run_once()
    assert (count("404"), count("502")) == (before[0] + 1, before[1])  # a 502 was counted as retried
    statuses = dict(sqlite_store._db().execute("SELECT delivery_id, status FROM deliveries").fetchall())
    assert statuses == {"z404": "failed", "z502": "queued"}  # a 404 is the same next time: no retry


def test_a_mention_inside_a_thread_is_answered_in_that_thread(github):
    gh = github[0]
    h, _ = handlers()
    payload = s.review_comment_payload(body="@revisor use a context manager here")
    payload["comment"].update(id=s.COMMENT_ID + 1, in_reply_to_id=s.COMMENT_ID)
    assert handle(github, "pull_request_review_comment", payload, h).startswith("replied")
    [reply] = s.replies(gh)
    assert reply["body"].startswith("```suggestion\n")


def test_repositories_choose_adapters_the_service_offers():
    from revisor.bot.service import build_handlers
    from revisor.model.settings import ModelSettings

    settings = ModelSettings(engine="openai", base_url="http://127.0.0.1:9/v1", model="base")
    h = build_handlers(settings, "revisor", adapters=("team-a",))
    config = RepoConfig.parse("adapter: team-a\nstrategy: fine-tuned\n")
    reviser = h.reviser(config)
    assert reviser.engine.description == "team-a"
    assert "(team-a, confidence 0.50)" in h.footer(config, 0.5)  # the footer names what answered
    assert reviser.strategy.name == "fine-tuned"
    assert h.reviser(RepoConfig()).engine.description == "base"
    with pytest.raises(RevisorError, match="not offered by this service"):
        h.reviser(RepoConfig.parse("adapter: team-b\n"))


def test_worker_threads_asking_at_once_share_one_engine_and_one_index(tmp_path, monkeypatch):
    import threading

    from revisor.bot.service import build_handlers
    from revisor.model import retrieval
    from revisor.model.settings import ModelSettings

    built, original = [], retrieval.BM25Retriever.__init__

    def slow_index(self, *args, **kwargs):  # as building a large pool's index takes seconds
        built.append(self)
        time.sleep(0.5)
        original(self, *args, **kwargs)

    monkeypatch.setattr(retrieval.BM25Retriever, "__init__", slow_index)
    monkeypatch.setenv("REVISOR_HOME", str(tmp_path))
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps({"old": f" x = {i}", "new": f" y = {i}", "review": "rename x"}) + "\n"
                            for i in range(5)))
    settings = ModelSettings(engine="openai", base_url="http://127.0.0.1:9/v1", model="base", pool=str(pool))
    h = build_handlers(settings, "revisor", adapters=("team-a",))
    config = RepoConfig.parse("adapter: team-a\nstrategy: few-shot\n")
    revisers = []
    threads = [threading.Thread(target=lambda: revisers.append(h.reviser(config))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(built) == 1 and len({id(r) for r in revisers}) == 1
    assert revisers[0].engine.description == "team-a"


def review_command(gh) -> dict:
    """`/revisor review` in the pull request's conversation, a comment GitHub holds."""
    payload = s.fixture_payload("issue_comment/created.with-installation.payload.json")
    payload["issue"].update(number=s.PR, pull_request={"url": "x"})
    payload["comment"].update(body="/revisor review", created_at=datetime.now(UTC).isoformat())
    payload["installation"] = {"id": s.INSTALLATION}
    gh.pulls[s.PR].issue_comments.append({"id": payload["comment"]["id"], "body": "/revisor review",
                                          "user": {"login": "Codertocat", "type": "User"}})
    return payload


def test_on_demand_review_from_a_pull_request_conversation(github):
    gh = github[0]
    payload = review_command(gh)
    assert wanted("issue_comment", payload)
    h, _ = handlers(lambda code: code + "# revised\n")
    assert handle(github, "issue_comment", payload, h).startswith("posted a review with")
    assert gh.pulls[s.PR].reviews[-1]["commit_id"] == s.HEAD
    assert [r["content"] for r in gh.reactions] == ["eyes"] and len(gh.pulls[s.PR].issue_comments) == 1


def test_a_review_asked_for_days_ago_is_not_made_of_todays_head(github):
    gh = github[0]
    payload = review_command(gh)
    payload["comment"]["created_at"] = (datetime.now(UTC) - timedelta(days=3)).isoformat()
    h, engine = handlers(lambda code: code + "# revised\n")
    assert handle(github, "issue_comment", payload, h).startswith("asked 72 h ago")
    assert gh.pulls[s.PR].reviews == [] and engine.requests == []


def test_asked_to_review_with_nothing_confident_it_says_so_once_and_unasked_it_stays_quiet(github):
    gh = github[0]
    engine = FakeEngine(lambda code: code + "# revised\n", logprob=-1.0)
    h = Handlers(lambda strategy, adapter: Reviser(engine, ZeroShot(), min_confidence=0.5), "fake-model")
    assert handle(github, "pull_request", s.pull_request_payload(), h).startswith("no suggestions from")
    assert gh.pulls[s.PR].reviews == [] and gh.pulls[s.PR].issue_comments == []  # of its own accord
    payload = review_command(gh)
    assert handle(github, "issue_comment", payload, h).startswith("no suggestions from")
    [asked, note] = gh.pulls[s.PR].issue_comments
    assert note["body"].startswith("Revisor reviewed 4 changed region(s) and has no suggestion to post: 4 "
                                   "answer(s) were held back as not confident enough.")
    assert gh.reactions == [{"kind": "issues", "comment_id": asked["id"], "content": "eyes",
                             "user": "revisor[bot]"}]
    assert handle(github, "issue_comment", payload, h).startswith("no suggestions from")  # redelivered
    assert len(gh.pulls[s.PR].issue_comments) == 2


def test_the_service_reacts_to_a_comment_that_asks_as_it_stores_the_job(github, sqlite_store):
    from revisor.bot.config import GitHubSettings
    from revisor.bot.service import acknowledger

    gh, key, url = github
    acknowledge = acknowledger(GitHubSettings(app_id=s.APP_ID, app_private_key=key, api_url=url), "revisor")
    with ServerThread(create_app(s.SECRET, sqlite_store, acknowledge=acknowledge)) as service:
        plain = s.review_comment_payload(body="looks good", comment_id=s.COMMENT_ID + 2)
        gh.pulls[s.PR].review_comments.append(s.human_comment("looks good", s.COMMENT_ID + 2))
        assert post(service, *s.signed(plain, "pull_request_review_comment", "plain")).status_code == 202
        asking = s.signed(s.review_comment_payload(), "pull_request_review_comment", "asks")
        assert post(service, *asking).status_code == 202
        wait_until(lambda: gh.reactions != [], 10)
    assert gh.reactions == [{"kind": "pulls", "comment_id": s.COMMENT_ID, "content": "eyes",
                             "user": "revisor[bot]"}]
    assert sqlite_store.counts() == {"queued": 2}  # the workers answer; none ran yet


def test_a_delivery_id_cannot_add_fields_to_a_log_line(capsys):
    from revisor.bot.service import configure_logging

    configure_logging()
    forged = 'x", "level": "CRITICAL", "forged": "1'
    logging.getLogger("revisor.webhooks").info('said "%s"', "hi", extra={"delivery_id": forged})
    [line] = [json.loads(line) for line in capsys.readouterr().err.splitlines() if "forged" in line]
    assert line["level"] == "INFO" and line["delivery_id"] == forged and "forged" not in line
    assert line["message"] == 'said "hi"'


def test_every_real_payload_of_an_event_revisor_acts_on_has_the_shape_it_reads():
    from revisor.bot.events import EVENTS, malformed

    checked = 0
    for event in EVENTS:
        for path in sorted(shared_path(f"fixtures/github-webhooks/{event}").glob("*.json")):
            payload = json.loads(path.read_text())
            if event == "issue_comment":  # made a pull request's comment that asks
                payload["issue"]["pull_request"] = {"url": "x"}
                payload["comment"]["body"] = "/revisor review"
            if wanted(event, payload):
                assert malformed(event, payload, from_app=False) is None, path.name
                checked += 1
    assert checked >= 8


def test_a_signed_delivery_without_the_shape_revisor_reads_is_refused_not_stored(webhooks, store):
    def review_comment(change) -> dict:
        payload = s.review_comment_payload()
        change(payload)
        return payload

    mutations = {
        "pull_request null": lambda p: p.update(pull_request=None),
        "pull_request missing": lambda p: p.pop("pull_request"),
        "pull_request a string": lambda p: p.update(pull_request="12"),
        "repository missing": lambda p: p.pop("repository"),
        "repository null": lambda p: p.update(repository=None),
        "installation id a string": lambda p: p.update(installation={"id": "7"}),
        "installation a number": lambda p: p.update(installation=7),
        "installation missing": lambda p: p.pop("installation"),
        "comment null": lambda p: p.update(comment=None),
        "line a string": lambda p: p["comment"].update(line="12"),
        "head null": lambda p: p["pull_request"].update(head=None),
        "comment id missing": lambda p: p["comment"].pop("id"),
        "path a list": lambda p: p["comment"].update(path=["a.py"]),
    }
    for i, (name, change) in enumerate(mutations.items()):
        delivery = s.signed(review_comment(change), "pull_request_review_comment", f"bad-{i}")
        answer = post(webhooks, *delivery)
        assert (answer.status_code, answer.json()) == (400, {"status": "malformed payload"}), name
    pull = s.pull_request_payload()
    pull["pull_request"]["number"] = "7"
    assert post(webhooks, *s.signed(pull, "pull_request", "bad-pr")).status_code == 400
    assert store.counts() == {}
    outdated = review_comment(lambda p: p["comment"].update(line=None))  # as GHES sends it: valid
    assert post(webhooks, *s.signed(outdated, "pull_request_review_comment", "ghes")).status_code == 202
    assert store.counts() == {"queued": 1}
