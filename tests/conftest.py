"""Shared fixtures: the shared datasets, and one of each real model engine per test session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests import servers

ROOT = servers.ROOT
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


os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
"""Each vLLM engine the tests start keeps 1 GiB for its KV cache (Revisor's default is 2): up to
four run at once, in 24 GiB."""

SHARED_FIXTURES = {"vllm_engine", "vllm_server", "transformers_engine", "adapter"}
"""Session fixtures that start a model engine or train. The suite runs in two processes
(`pytest -n 2 --dist loadgroup`): every test using one of these runs in the same process, so each
is built once; the other slow tests (each starts a model of its own) take turns in the other."""


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items):
    for item in items:
        if SHARED_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.xdist_group("shared-models"))
        elif item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.xdist_group("own-models"))


NICENESS = 5
"""Under `-n 2` the tests sharing the session's engines are the longest lane: a test process that
runs any other test lowers its CPU priority (for good, with the processes it starts), so the
other lane runs in the cycles the shared one leaves rather than slowing it."""


@pytest.fixture(autouse=True)
def _yield_to_shared_models(request):
    group = request.node.get_closest_marker("xdist_group")
    shared = group is not None and group.args[0] == "shared-models"
    if os.environ.get("PYTEST_XDIST_WORKER") and not shared and os.getpriority(os.PRIO_PROCESS, 0) < NICENESS:
        os.setpriority(os.PRIO_PROCESS, 0, NICENESS)


@pytest.fixture(scope="session")
def embedded_model() -> str:
    from revisor.model.embedded import prepare_embedded_model

    return str(prepare_embedded_model())


@pytest.fixture(scope="session")
def vllm_engine(embedded_model):
    """The in-process vLLM engine, eager (no compilation) so the suite starts fast."""
    from revisor.model.engines.base import EngineConfig
    from revisor.model.engines.vllm_local import VLLMEngine

    engine = VLLMEngine(EngineConfig(model=embedded_model, compile=False))
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def transformers_engine(embedded_model):
    """The transformers engine, one request at a time (the same batch shapes as the others)."""
    from revisor.model.engines.base import EngineConfig
    from revisor.model.engines.hf import TransformersEngine

    return TransformersEngine(EngineConfig(model=embedded_model, batch_size=1))


@pytest.fixture(scope="session")
def vllm_server(embedded_model, tmp_path_factory):
    """A real `vllm serve` process with the embedded model."""
    server, base_url = servers.vllm_server(embedded_model, SERVED_NAME,
                                           tmp_path_factory.mktemp("vllm-serve") / "server.log")
    yield base_url
    server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A real Redis server (Debian's redis-server)."""
    if shutil.which("redis-server") is None:
        unavailable("redis-server is not installed (Debian: apt-get install redis-server)")
    server, url = servers.redis_server(tmp_path_factory.mktemp("redis"))
    yield url
    server.stop()


@pytest.fixture
def redis_url(redis_server):
    """The session's Redis server, emptied for this test."""
    import redis

    redis.Redis.from_url(redis_server).flushall()
    return redis_server
