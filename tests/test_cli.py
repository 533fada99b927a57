"""The `revisor` command as a user runs it: real processes, real files, one-line errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, shared_path

DEMO = str(ROOT / "examples" / "demo.diff")


def revisor(*args: str, stdin: bytes | None = None, env: dict | None = None,
            cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "revisor", *args], input=stdin, capture_output=True,
                          cwd=cwd, timeout=600, env={**os.environ, **(env or {})})


def assert_one_line_error(result: subprocess.CompletedProcess, fragment: str) -> None:
    err = result.stderr.decode()
    assert result.returncode != 0
    assert fragment in err
    assert "Traceback" not in err
    assert err.strip().count("\n") == 0, err


def test_help_explains_every_command():
    from revisor.bot.cli import cli

    overview = revisor("--help").stdout.decode().split("Review code:")[1]
    for name, command in cli.commands.items():
        assert overview.count(f"\n  {name} ") == 1, f"`revisor --help` lists {name} other than once"
        result = revisor(name, "--help")
        first_words = " ".join(command.help.split()[:5])
        assert result.returncode == 0 and first_words in " ".join(result.stdout.decode().split())
    review_help = revisor("review", "--help").stdout.decode()
    assert "PATH:LINE[-END]=TEXT" in review_help and "--max-regions" in review_help
    assert "--min-confidence" in review_help and "--calibration" in review_help


def test_empty_diff(tmp_path):
    (tmp_path / "empty.diff").write_text("")
    assert_one_line_error(revisor("review", str(tmp_path / "empty.diff")), "the diff is empty")


def test_binary_and_non_utf8_input(tmp_path):
    (tmp_path / "latin1.py").write_bytes("x = 'caf\xe9'\n".encode("latin-1"))
    assert_one_line_error(revisor("revise", "-c", "x", str(tmp_path / "latin1.py")), "not UTF-8 text")
    (tmp_path / "blob.bin").write_bytes(b"\x00\x01\x02")
    assert_one_line_error(revisor("revise", "-c", "x", str(tmp_path / "blob.bin")), "binary file")


def test_missing_files_and_models(tmp_path):
    assert_one_line_error(revisor("revise", "-c", "x", str(tmp_path / "nope.py")), "cannot read")
    assert_one_line_error(revisor("bench", "--dataset", str(tmp_path / "nope.jsonl")), "not found")
    code = tmp_path / "a.py"
    code.write_text("x = 1\n")
    assert_one_line_error(revisor("revise", "-c", "x", "--model", str(tmp_path / "no-model"), str(code)),
                          "not found")
    assert_one_line_error(revisor("revise", "-c", "x", "--adapter", str(tmp_path), str(code)),
                          "not a PEFT adapter")


def test_an_output_that_cannot_be_written_is_a_one_line_error(tmp_path):
    pool = tmp_path / "pool.jsonl"
    rows = [{"old": f" x = {i}", "new": f" y = {i}", "review": "rename"} for i in range(5)]
    pool.write_text("".join(json.dumps(row) + "\n" for row in rows))
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    result = revisor("data", "split", str(pool), "--dev-size", "2", "--output", str(blocked / "split"))
    assert_one_line_error(result, f"{blocked / 'split'}: Not a directory")


def test_adapter_for_another_base_model(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "org/Other-1B"}))
    code = tmp_path / "a.py"
    code.write_text("x = 1\n")
    result = revisor("revise", "-c", "x", "--adapter", str(tmp_path), str(code))
    assert_one_line_error(result, "was trained for org/Other-1B")


def test_comment_outside_the_diff_fails_before_the_model_starts():
    result = revisor("review", DEMO, "--comment", "app/storage.py:90=nit")
    assert_one_line_error(result, "not within one hunk")


def test_server_that_does_not_answer(tmp_path):
    code = tmp_path / "a.py"
    code.write_text("x = 1\n")
    result = revisor("revise", "-c", "x", "--engine", "openai", "--base-url", "http://127.0.0.1:9/v1",
                     str(code))
    assert_one_line_error(result, "cannot reach the model server at http://127.0.0.1:9/v1")


def test_few_shot_pool_must_not_be_the_benchmark_set():
    test_set = str(shared_path("datasets/codereviewer/test.jsonl"))
    result = revisor("bench", "--dataset", test_set, "--strategy", "few-shot", "--pool", test_set)
    assert_one_line_error(result, "is the benchmark dataset itself")


@pytest.mark.slow
def test_review_answers_a_comment_through_vllm_serve(vllm_server):
    result = revisor("review", "--engine", "openai", "--base-url", vllm_server, DEMO,
                     "--comment", "app/storage.py:11-13=use a context manager here", "--format", "json")
    assert result.returncode == 0, result.stderr.decode()
    data = json.loads(result.stdout)
    assert data["regions_reviewed"] == 1
    [suggestion] = data["suggestions"]
    assert (suggestion["path"], suggestion["start_line"], suggestion["line"]) == ("app/storage.py", 11, 13)
    assert "with open(path" in suggestion["replacement"]
    assert suggestion["rationale"] == "use a context manager here"


@pytest.mark.slow
def test_review_from_stdin_reports_budget(vllm_server):
    result = revisor("review", "--engine", "openai", "--base-url", vllm_server, "--max-regions", "1",
                     stdin=Path(DEMO).read_bytes() + Path(DEMO).read_bytes().replace(b"app/", b"lib/"))
    assert result.returncode == 0, result.stderr.decode()
    out = result.stdout.decode()
    assert "from 1 region(s) reviewed" in out
    assert "Budget: 1 region(s) not reviewed:\n  lib/storage.py:10-20: over --max-regions 1" in out


@pytest.mark.slow
def test_revise_prints_a_unified_diff(vllm_server, tmp_path):
    code = tmp_path / "io.py"
    code.write_text("def read(path):\n    f = open(path)\n    data = f.read()\n"
                    "    f.close()\n    return data\n")
    result = revisor("revise", "--engine", "openai", "--base-url", vllm_server, "--diff",
                     "-c", "use a context manager here", str(code))
    assert result.returncode == 0, result.stderr.decode()
    out = result.stdout.decode()
    assert out.startswith(f"--- a/{code}\n+++ b/{code}\n@@")
    assert "+    with open(path" in out


def test_serve_refuses_to_start_without_a_secret_or_app_credentials(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
    run = subprocess.run([sys.executable, "-m", "revisor", "serve"], env=env, capture_output=True, cwd=ROOT,
                         timeout=60)
    assert_one_line_error(run, "GITHUB_WEBHOOK_SECRET must be set")
    env["GITHUB_WEBHOOK_SECRET"] = "s" * 32
    run = subprocess.run([sys.executable, "-m", "revisor", "serve"], env=env, capture_output=True, cwd=ROOT,
                         timeout=60)
    assert_one_line_error(run, "set GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY")
    env.update(GITHUB_APP_ID="1", GITHUB_APP_PRIVATE_KEY="unused", REVISOR_REDIS_URL="redis://127.0.0.1:9/0")
    for command in (["serve"], ["worker"]):
        run = subprocess.run([sys.executable, "-m", "revisor", *command], env=env, capture_output=True,
                             cwd=ROOT, timeout=60)
        assert_one_line_error(run, "REVISOR_REDIS_URL: cannot use Redis at redis://127.0.0.1:9/0")
    env["REVISOR_REDIS_URL"] = "not-a-url"
    run = subprocess.run([sys.executable, "-m", "revisor", "worker"], env=env, capture_output=True, cwd=ROOT,
                         timeout=60)
    assert_one_line_error(run, "REVISOR_REDIS_URL: cannot use Redis at not-a-url")


def test_worker_metrics_port_in_use_is_a_one_line_error(tmp_path):
    import socket

    env = {**os.environ, "GITHUB_WEBHOOK_SECRET": "s" * 32, "GITHUB_APP_ID": "1",
           "GITHUB_APP_PRIVATE_KEY": "unused", "REVISOR_DATABASE": str(tmp_path / "jobs.db")}
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = [sys.executable, "-m", "revisor", "worker", "--metrics-port", str(port)]
        run = subprocess.run(command, env=env, capture_output=True, cwd=ROOT, timeout=60)
    assert_one_line_error(run, f"--metrics-port {port}: Address already in use")


def test_jobs_lists_failed_jobs_and_queues_them_again(tmp_path, monkeypatch):
    from revisor.bot.jobs import SQLiteJobStore

    database = tmp_path / "jobs.db"
    store = SQLiteJobStore(database)
    for delivery in ("a", "b"):
        store.enqueue(delivery, "pull_request", json.dumps({"delivery": delivery}).encode())
        store.finish(store.claim(30), "ValueError: .github/revisor.yml is broken", retry=False)
    monkeypatch.setenv("REVISOR_DATABASE", str(database))
    listed = revisor("jobs").stdout.decode()
    assert "failed: 2" in listed
    assert "failed a (pull_request): ValueError: .github/revisor.yml is broken" in listed
    requeued = revisor("jobs", "--requeue", "a").stdout.decode()
    assert "queued a again" in requeued and "failed: 1, queued: 1" in requeued
    assert_one_line_error(revisor("jobs", "--requeue", "zzz"), "no failed job has delivery id 'zzz'")
    assert "queued: 2" in revisor("jobs", "--requeue-all").stdout.decode()
    for delivery in ("c", "d", "e"):
        store.enqueue(delivery, "pull_request", json.dumps({"delivery": delivery}).encode())
    while job := store.claim(30):
        store.finish(job, "ValueError: broken", retry=False)
    braked = revisor("jobs", "--requeue-all", "--limit", "2").stdout.decode()
    assert "2 of 5 failed job(s) queued again; 3 left" in braked and "failed: 3, queued: 2" in braked


def test_jobs_and_report_see_what_serve_stored_from_any_directory(tmp_path, monkeypatch):
    import httpx

    from tests import bot_scenario as s
    from tests.servers import revisor as start

    monkeypatch.delenv("REVISOR_DATABASE", raising=False)
    home, served_from, asked_from = tmp_path / "home", tmp_path / "a", tmp_path / "b"
    served_from.mkdir(), asked_from.mkdir()
    env = {**os.environ, "REVISOR_HOME": str(home), "GITHUB_WEBHOOK_SECRET": s.SECRET, "GITHUB_APP_ID": "1",
           "GITHUB_APP_PRIVATE_KEY": "unused: no worker runs"}
    serve = start(["serve", "--workers", "0"], env, tmp_path / "serve.log", cwd=served_from)
    try:
        body, headers = s.signed(s.review_comment_payload(), "pull_request_review_comment", "anywhere")
        answer = httpx.post(f"{serve.url}/api/github/webhooks", content=body, headers=headers, timeout=10)
        assert answer.status_code == 202
    finally:
        serve.stop()
    listed = revisor("jobs", env={"REVISOR_HOME": str(home)}, cwd=asked_from)
    assert listed.returncode == 0 and "queued: 1" in listed.stdout.decode(), listed.stderr.decode()
    assert "no suggestions posted yet" in revisor("report", env={"REVISOR_HOME": str(home)},
                                                  cwd=asked_from).stdout.decode()
    assert (home / "revisor.db").is_file() and list(served_from.iterdir()) == list(asked_from.iterdir()) == []


def test_settings_are_validated_with_one_line_naming_the_variable_or_flag(tmp_path):
    code = tmp_path / "a.py"
    code.write_text("x = 1\n")
    bad = revisor("revise", "-c", "x", str(code), env={"REVISOR_MIN_CONFIDENCE": "2"})
    assert_one_line_error(bad, "--min-confidence / REVISOR_MIN_CONFIDENCE: Input should be less than or "
                               "equal to 1, not '2'")
    assert_one_line_error(revisor("revise", "-c", "x", str(code), env={"REVISOR_ENGINE": "torch"}),
                          "--engine / REVISOR_ENGINE: Input should be 'vllm', 'openai' or 'transformers'")
    few_shot = revisor("revise", "-c", "x", "--strategy", "few-shot", str(code))
    assert_one_line_error(few_shot, "few-shot needs --pool / REVISOR_POOL")
    for command in (["review", DEMO], ["bench", "--dataset", DEMO], ["calibrate", "--dataset", DEMO]):
        assert_one_line_error(revisor(*command, env={"REVISOR_STRATEGY": "few-shot", "REVISOR_SHOTS": "0"}),
                              "--shots / REVISOR_SHOTS: Input should be greater than or equal to 1, not '0'")
    service = {"GITHUB_WEBHOOK_SECRET": "s" * 32, "GITHUB_APP_ID": "1", "GITHUB_APP_PRIVATE_KEY": "unused",
               "REVISOR_LEASE_SECONDS": "soon"}
    assert_one_line_error(revisor("serve", env=service),
                          "REVISOR_LEASE_SECONDS: Input should be a valid number, unable to parse string "
                          "as a number, not 'soon'")


def test_reference_docs_are_generated_from_the_code():
    from revisor.bot.reference import main

    assert main(["--check"]) == 0, "docs/configuration.md or docs/cli.md is stale"


def test_settings_never_show_secrets(monkeypatch):
    from revisor.bot.config import service_settings

    for name, value in {"GITHUB_WEBHOOK_SECRET": "s" * 32, "GITHUB_APP_ID": "1",
                        "GITHUB_APP_PRIVATE_KEY": "-----BEGIN RSA PRIVATE KEY-----x"}.items():
        monkeypatch.setenv(name, value)
    settings = service_settings()
    assert "s" * 32 not in repr(settings) and "PRIVATE KEY" not in repr(settings)
    assert settings[1].app_credentials() == ("1", "-----BEGIN RSA PRIVATE KEY-----x")

