"""Shared fixtures: the shared datasets, and one of each real model engine per test session."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("REVISOR_SHARED", ROOT.parent / "shared")).resolve()
SERVED_NAME = "revisor-embedded"


def unavailable(message: str):
    """Skip a test for want of something outside the project; under .ci/run, fail it."""
    if os.environ.get("REVISOR_NO_SKIPS"):
        pytest.fail(message + " (REVISOR_NO_SKIPS is set)")
    pytest.skip(message)


def shared_path(relative: str) -> Path:
    """A file of ../shared; skipped with a reason where it is absent, failed under .ci/run."""
    path = SHARED / relative
    if not path.exists():
        unavailable(f"{path} is absent: the shared datasets are not part of a user's clone")
    return path


@pytest.fixture(scope="session")
def embedded_model() -> str:
    from model.embedded import prepare_embedded_model

    return str(prepare_embedded_model())


@pytest.fixture(scope="session")
def vllm_engine(embedded_model):
    """The in-process vLLM engine, eager (no compilation) so the suite starts fast."""
    from model.engines.base import EngineConfig
    from model.engines.vllm_local import VLLMEngine

    engine = VLLMEngine(EngineConfig(model=embedded_model, compile=False))
    yield engine
    engine.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def vllm_server(embedded_model, tmp_path_factory):
    """A real `vllm serve` process (run as the api_server module) with the embedded model."""
    port = _free_port()
    log = tmp_path_factory.mktemp("vllm-serve") / "server.log"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "2", "VLLM_LOGGING_LEVEL": "WARNING"}
    command = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", embedded_model, "--served-model-name", SERVED_NAME,
        "--host", "127.0.0.1", "--port", str(port),
        "--max-model-len", "4096", "--enforce-eager", "--seed", "0",
    ]
    with log.open("w") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    base_url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 600
    try:
        while True:
            if server.poll() is not None:
                pytest.fail(f"vllm serve exited with {server.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vllm serve did not become healthy:\n{log.read_text()[-3000:]}")
            time.sleep(2)
        yield base_url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A real Redis server (Debian's redis-server), writing every change to disk as deployed."""
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("redis-server is not installed (Debian: apt-get install redis-server)")
    port, data = _free_port(), tmp_path_factory.mktemp("redis")
    server = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data),
                               "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
                              stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    import redis

    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 30
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail("redis-server did not start")
            time.sleep(0.1)
    yield url
    server.terminate()
    server.wait(timeout=30)


@pytest.fixture
def redis_url(redis_server):
    """The session's Redis server, emptied for this test."""
    import redis

    redis.Redis.from_url(redis_server).flushall()
    return redis_server
