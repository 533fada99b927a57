"""The bot end to end with the embedded model (served by a real `vllm serve`): `revisor serve` and
`revisor action` as processes, against the GitHub-like server."""

import contextlib
import functools
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time

import httpx
import pytest
import yaml

from tests import bot_scenario as s
from tests.conftest import ROOT, SERVED_NAME
from tests.github_server import ServerThread, create_github_app
from tests.servers import Server, revisor, wait_until

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


def post(serve: Server, body: bytes, headers: dict) -> httpx.Response:
    return httpx.post(f"{serve.url}/api/github/webhooks", content=body, headers=headers, timeout=10)


def status(database, delivery):
    with sqlite3.connect(database) as db:
        row = db.execute("SELECT status FROM deliveries WHERE delivery_id = ?", (delivery,)).fetchone()
    return row[0] if row else None


def test_signed_comment_gets_exactly_one_suggestion_reply(github, vllm_server, tmp_path):
    gh, key, url = github
    database = tmp_path / "revisor.db"
    serve = revisor(["serve"], bot_env(url, key, vllm_server, database), tmp_path / "serve.log")
    try:
        body, headers = s.signed(s.review_comment_payload(), "pull_request_review_comment", "e2e-1")
        bad = {**headers, "X-Hub-Signature-256": "sha256=" + "f" * 64, "X-GitHub-Delivery": "e2e-bad"}
        assert post(serve, body, bad).status_code == 401
        assert post(serve, body, headers).status_code == 202
        wait_until(lambda: status(database, "e2e-1") == "done")
        [reply] = s.replies(gh)
        assert reply["body"].startswith("```suggestion\n")
        suggested = reply["body"].split("```suggestion\n", 1)[1].split("\n```", 1)[0]
        assert "with open(path" in suggested
        assert f"Revisor ({SERVED_NAME}, confidence " in reply["body"] and vllm_server not in reply["body"]
        assert [(r["comment_id"], r["content"]) for r in gh.reactions] == [(s.COMMENT_ID, "eyes")]
        assert post(serve, body, headers).status_code == 200  # redelivery
        time.sleep(2)
        assert len(s.replies(gh)) == 1 and status(database, "e2e-bad") is None
    finally:
        serve.stop()


def test_a_worker_killed_mid_job_posts_exactly_once_after_restart(github, vllm_server, tmp_path):
    gh, key, url = github
    database = tmp_path / "revisor.db"
    env = bot_env(url, key, vllm_server, database)
    gh.slow_paths["/files"] = 4.0  # the job is mid-way while it reads the diff
    serve = revisor(["serve"], env, tmp_path / "serve.log")
    body, headers = s.signed(s.review_comment_payload(), "pull_request_review_comment", "e2e-kill")
    assert post(serve, body, headers).status_code == 202
    wait_until(lambda: status(database, "e2e-kill") == "running", 60)
    serve.stop(signal.SIGKILL)
    assert s.replies(gh) == []
    gh.slow_paths.clear()
    serve = revisor(["serve"], env, tmp_path / "serve.log")
    try:
        wait_until(lambda: status(database, "e2e-kill") == "done")
        assert len(s.replies(gh)) == 1
    finally:
        serve.stop()


def test_action_yml_installs_once_then_answers_in_seconds_from_its_cache(github, vllm_server, tmp_path):
    """action.yml's steps run as the runner runs them (its `${{ }}` expressions evaluated from the
    action's inputs, each step's env and command): twice over the same cache folders, first with
    nothing cached, then as actions/cache restores them, and the event answered through
    `vllm serve`."""
    gh, _, url = github
    gh.tokens.add("ghs_action_token")
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    steps = {step.get("name"): step for step in action["runs"]["steps"]}
    inputs = {name: spec.get("default", "") for name, spec in action["inputs"].items()}
    inputs.update({"token": "ghs_action_token", "base-url": vllm_server, "model": SERVED_NAME})
    outputs = tmp_path / "github-output"
    context = {"inputs": inputs, "runner": {"temp": str(tmp_path)}, "github": {"action_path": str(ROOT)},
               "steps": {"cache": {"outputs": {"cache-hit": "false"}}, "key": {"outputs": {}}}}

    def evaluate(text: str) -> str:
        def value(match: re.Match) -> str:
            expression = match[1].strip()
            either = re.fullmatch(r"inputs\.([\w-]+) != '' && '(\w+)' \|\| '(\w+)'", expression)
            if either:
                return either[2] if inputs[either[1]] else either[3]
            return functools.reduce(lambda scope, name: scope[name], expression.split("."), context)
        return re.sub(r"\$\{\{(.*?)\}\}", value, text)

    def run_step(name: str, extra: dict | None = None) -> tuple[subprocess.CompletedProcess, float]:
        step = steps[name]
        env = {**os.environ, **{k: evaluate(str(v)) for k, v in step.get("env", {}).items()},
               "RUNNER_OS": "Linux", "GITHUB_OUTPUT": str(outputs), **(extra or {})}
        started = time.perf_counter()
        result = subprocess.run([step["shell"], "-c", evaluate(step["run"])], cwd=tmp_path, env=env,
                                capture_output=True, timeout=600)
        assert result.returncode == 0, result.stderr.decode()[-2000:]
        return result, time.perf_counter() - started

    run_step("Cache key")
    key = outputs.read_text().strip().removeprefix("key=")
    assert re.fullmatch(r"revisor-Linux-py3\.11-bot-[0-9a-f]{16}", key)
    _, cold = run_step("Install Revisor")
    context["steps"]["cache"]["outputs"]["cache-hit"] = "true"  # the same folders, restored
    warm_run, warm = run_step("Install Revisor")
    assert b"restored from the cache" in warm_run.stdout and warm <= 10, f"warm setup took {warm:.1f} s"

    event = s.write_event(tmp_path, s.review_comment_payload())
    answered, answering = run_step("Answer the event", {
        "GITHUB_EVENT_NAME": "pull_request_review_comment", "GITHUB_REPOSITORY": s.REPO,
        "GITHUB_API_URL": url, "GITHUB_EVENT_PATH": str(event)})
    print(f"action.yml: install {cold:.1f} s with nothing cached, {warm:.1f} s from the cache; "
          f"answer {answering:.1f} s")
    assert b"replied with a suggestion for app/storage.py:11-13" in answered.stdout
    [reply] = s.replies(gh)
    assert "```suggestion\n" in reply["body"]
    assert [(r["comment_id"], r["content"]) for r in gh.reactions] == [(s.COMMENT_ID, "eyes")]


def test_the_action_with_the_in_process_model_exits_once_it_answered_and_leaves_no_process(github, tmp_path):
    import psutil

    gh, _, url = github
    gh.tokens.add("ghs_action_token")
    env = {**os.environ, "GITHUB_EVENT_NAME": "pull_request_review_comment",
           "GITHUB_EVENT_PATH": str(s.write_event(tmp_path, s.review_comment_payload())),
           "GITHUB_REPOSITORY": s.REPO, "GITHUB_API_URL": url, "INPUT_TOKEN": "ghs_action_token",
           "REVISOR_MIN_CONFIDENCE": "0"}  # the default model, in this process: vLLM's engine process
    action = subprocess.Popen([sys.executable, "-m", "revisor", "action"], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    children: set[int] = set()

    def answered() -> bool:
        with contextlib.suppress(psutil.Error):
            children.update(c.pid for c in psutil.Process(action.pid).children(recursive=True))
        return action.poll() is not None or len(s.replies(gh)) == 1

    try:
        wait_until(answered, 400)
        assert action.wait(timeout=60) == 0, action.stdout.read().decode()[-2000:]
    finally:
        action.kill()
    assert len(s.replies(gh)) == 1 and children
    time.sleep(1)
    assert [pid for pid in children if psutil.pid_exists(pid)
            and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE] == []


def test_two_worker_processes_share_redis_and_a_killed_one_loses_nothing(github, vllm_server, redis_url,
                                                                        tmp_path):
    import redis

    gh, key, url = github
    comments = range(100, 106)
    gh.pulls[s.PR].review_comments += [s.human_comment(comment_id=i) for i in comments]
    gh.slow_paths["/files"] = 1.0  # jobs last long enough to be caught mid-way
    env = {**bot_env(url, key, vllm_server, tmp_path / "unused.db"), "REVISOR_REDIS_URL": redis_url}
    serve = revisor(["serve", "--workers", "0"], env, tmp_path / "serve.log")
    workers = [revisor(["worker"], env, tmp_path / f"worker-{n}.log") for n in (1, 2)]
    client = redis.Redis.from_url(redis_url)
    try:
        for i in comments:
            body, headers = s.signed(s.review_comment_payload(comment_id=i), "pull_request_review_comment",
                                     f"burst-{i}")
            assert post(serve, body, headers).status_code == 202
        victim = workers[0].pid

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


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_while_the_engine_starts_ends_revisor_and_its_engine_process(stop, tmp_path):
    import psutil

    code = tmp_path / "a.py"
    code.write_text("x = 1\n")
    command = [sys.executable, "-m", "revisor", "revise", "-c", "rename x", str(code)]
    revise = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    engines: set[int] = set()

    def engine_starting() -> bool:
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(revise.pid).children(recursive=True):
                if "EngineCore" in " ".join([child.name(), *child.cmdline()]):
                    engines.add(child.pid)
        return bool(engines) or revise.poll() is not None

    try:
        wait_until(engine_starting, 300, 0.05)
        assert engines, "vLLM's engine process never started"
        revise.send_signal(stop)
        assert revise.wait(timeout=60) == 130, revise.stdout.read().decode()[-2000:]
    finally:
        revise.kill()
    wait_until(lambda: not [pid for pid in engines if psutil.pid_exists(pid)
                            and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE], 30)
