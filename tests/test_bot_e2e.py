"""The bot end to end with the embedded model (served by a real `vllm serve`): `revisor serve` and
`revisor action` as processes, against the GitHub-like server."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests import bot_scenario as s
from tests.conftest import ROOT, SERVED_NAME, _free_port
from tests.github_server import ServerThread, create_github_app

pytestmark = pytest.mark.slow


@pytest.fixture
def github():
    gh, key = s.fake_github(config="review_comments: mention\n")
    with ServerThread(create_github_app(gh)) as url:
        yield gh, key, url


def bot_env(github_url, key, vllm_server, database) -> dict:
    return {**os.environ, "GITHUB_APP_ID": s.APP_ID, "GITHUB_APP_PRIVATE_KEY": key,
            "GITHUB_WEBHOOK_SECRET": s.SECRET, "GITHUB_API_URL": github_url,
            "REVISOR_DATABASE": str(database), "REVISOR_ENGINE": "openai", "REVISOR_BASE_URL": vllm_server,
            "REVISOR_MODEL": SERVED_NAME, "REVISOR_LEASE_SECONDS": "3"}


class Process:
    """`revisor serve` (or another command with an HTTP endpoint), ready once `path` answers."""

    def __init__(self, env, log, command=("serve",), path="/healthz"):
        self.port = _free_port()
        self.log = log
        port_option = "--port" if command[0] == "serve" else "--metrics-port"
        with open(log, "a") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bot.cli", *command, port_option, str(self.port)], cwd=ROOT, env=env,
                stdout=out, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}{path}", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert self.process.poll() is None and time.monotonic() < deadline, Path(log).read_text()
            time.sleep(0.2)

    def post(self, body, headers):
        return httpx.post(f"{self.url}/api/github/webhooks", content=body, headers=headers, timeout=10)

    def stop(self, sig=signal.SIGTERM):
        self.process.send_signal(sig)
        self.process.wait(timeout=30)


def wait_until(condition, seconds=180):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.3)


def status(database, delivery):
    with sqlite3.connect(database) as db:
        row = db.execute("SELECT status FROM deliveries WHERE delivery_id = ?", (delivery,)).fetchone()
    return row[0] if row else None


def test_signed_comment_gets_exactly_one_suggestion_reply(github, vllm_server, tmp_path):
    gh, key, url = github
    database = tmp_path / "revisor.db"
    serve = Process(bot_env(url, key, vllm_server, database), tmp_path / "serve.log")
    try:
        body, headers = s.signed(s.review_comment_payload(), "pull_request_review_comment", "e2e-1")
        bad = {**headers, "X-Hub-Signature-256": "sha256=" + "f" * 64, "X-GitHub-Delivery": "e2e-bad"}
        assert serve.post(body, bad).status_code == 401
        assert serve.post(body, headers).status_code == 202
        wait_until(lambda: status(database, "e2e-1") == "done")
        [reply] = s.replies(gh)
        assert reply["body"].startswith("```suggestion\n")
        suggested = reply["body"].split("```suggestion\n", 1)[1].split("\n```", 1)[0]
        assert "with open(path" in suggested
        assert f"Revisor ({SERVED_NAME} at {vllm_server})" in reply["body"]
        assert serve.post(body, headers).status_code == 200  # redelivery
        time.sleep(2)
        assert len(s.replies(gh)) == 1 and status(database, "e2e-bad") is None
    finally:
        serve.stop()


def test_a_worker_killed_mid_job_posts_exactly_once_after_restart(github, vllm_server, tmp_path):
    gh, key, url = github
    database = tmp_path / "revisor.db"
    env = bot_env(url, key, vllm_server, database)
    gh.slow_paths["/files"] = 4.0  # the job is mid-way while it reads the diff
    serve = Process(env, tmp_path / "serve.log")
    body, headers = s.signed(s.review_comment_payload(), "pull_request_review_comment", "e2e-kill")
    assert serve.post(body, headers).status_code == 202
    wait_until(lambda: status(database, "e2e-kill") == "running", 60)
    serve.stop(signal.SIGKILL)
    assert s.replies(gh) == []
    gh.slow_paths.clear()
    serve = Process(env, tmp_path / "serve.log")
    try:
        wait_until(lambda: status(database, "e2e-kill") == "done")
        assert len(s.replies(gh)) == 1
    finally:
        serve.stop()


def test_action_entry_point_answers_from_an_event_file(github, vllm_server, tmp_path):
    gh, _, url = github
    gh.tokens.add("ghs_action_token")
    env = {**os.environ, "GITHUB_EVENT_NAME": "pull_request_review_comment",
           "GITHUB_EVENT_PATH": str(s.write_event(tmp_path, s.review_comment_payload())),
           "GITHUB_REPOSITORY": s.REPO, "GITHUB_API_URL": url, "INPUT_TOKEN": "ghs_action_token",
           "REVISOR_ENGINE": "openai", "REVISOR_BASE_URL": vllm_server, "REVISOR_MODEL": SERVED_NAME}
    result = subprocess.run([sys.executable, "-m", "bot.cli", "action"], cwd=ROOT, env=env,
                            capture_output=True, timeout=300)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert b"replied with a suggestion for app/storage.py:11-13" in result.stdout
    [reply] = s.replies(gh)
    assert "```suggestion\n" in reply["body"]


def test_two_worker_processes_share_redis_and_a_killed_one_loses_nothing(github, vllm_server, redis_url,
                                                                        tmp_path):
    import redis

    gh, key, url = github
    comments = range(100, 108)
    gh.pulls[s.PR].review_comments += [s.human_comment(comment_id=i) for i in comments]
    gh.slow_paths["/files"] = 1.0  # jobs last long enough to be caught mid-way
    env = {**bot_env(url, key, vllm_server, tmp_path / "unused.db"), "REVISOR_REDIS_URL": redis_url}
    serve = Process(env, tmp_path / "serve.log", ("serve", "--workers", "0"))
    workers = [Process(env, tmp_path / f"worker-{n}.log", ("worker",), "/metrics") for n in (1, 2)]
    client = redis.Redis.from_url(redis_url)
    try:
        for i in comments:
            body, headers = s.signed(s.review_comment_payload(comment_id=i), "pull_request_review_comment",
                                     f"burst-{i}")
            assert serve.post(body, headers).status_code == 202
        victim = workers[0].process.pid

        def victim_holds_a_job() -> bool:
            pending = client.xpending_range("{revisor}:jobs", "workers", "-", "+", 10)
            return any(f"-{victim}-" in p["consumer"].decode() for p in pending)

        wait_until(victim_holds_a_job, 60)
        workers[0].stop(signal.SIGKILL)
        wait_until(lambda: httpx.get(f"{serve.url}/metrics").text.count(
            f'revisor_jobs{{status="done"}} {float(len(comments))}') == 1)
        assert [len(s.replies(gh, i)) for i in comments] == [1] * len(comments)
        assert {client.hget("{revisor}:status", f"burst-{i}") for i in comments} == {b"done"}
        survivor = httpx.get(f"{workers[1].url}/metrics").text
        assert 'revisor_suggestions_total{outcome="posted"}' in survivor
        assert "revisor_model_request_seconds_count" in survivor
    finally:
        for process in (serve, workers[1]):
            process.stop()
