"""The `revisor` command as a user runs it: real processes, real files, one-line errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, shared_path

DEMO = str(ROOT / "examples" / "demo.diff")


def revisor(*args: str, stdin: bytes | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "revisor", *args], input=stdin, capture_output=True,
                          cwd=ROOT, timeout=600, env={**os.environ, **(env or {})})


def assert_one_line_error(result: subprocess.CompletedProcess, fragment: str) -> None:
    err = result.stderr.decode()
    assert result.returncode != 0
    assert fragment in err
    assert "Traceback" not in err
    assert err.strip().count("\n") == 0, err


def test_help_explains_every_command():
    from revisor.bot.cli import cli

    out = revisor("--help").stdout.decode()
    overview = out.split("Options:")[0]
    for name, command in cli.commands.items():
        assert f"\n  {name} " in overview, f"{name} is missing from the overview in `revisor --help`"
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


def test_settings_never_show_secrets(monkeypatch):
    from revisor.bot.config import service_settings

    for name, value in {"GITHUB_WEBHOOK_SECRET": "s" * 32, "GITHUB_APP_ID": "1",
                        "GITHUB_APP_PRIVATE_KEY": "-----BEGIN RSA PRIVATE KEY-----x"}.items():
        monkeypatch.setenv(name, value)
    settings = service_settings()
    assert "s" * 32 not in repr(settings) and "PRIVATE KEY" not in repr(settings)
    assert settings[1].app_credentials() == ("1", "-----BEGIN RSA PRIVATE KEY-----x")

