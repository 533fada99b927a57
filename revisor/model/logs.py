"""Quiet by default: a user sees Revisor's answer and progress, not its libraries' logs.

vLLM (and the engine processes it starts, which inherit the environment), transformers and torch
log and warn freely; unless asked for with `--verbose` or REVISOR_LOG_LEVEL=debug, only their
errors show, and what vLLM's engine processes write goes to a log file.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LIBRARIES = ("vllm", "transformers", "torch", "huggingface_hub", "peft", "accelerate", "httpx")
_quiet = False


def configure_quiet(verbose: bool = False) -> None:
    global _quiet
    verbose = verbose or os.environ.get("REVISOR_LOG_LEVEL", "").lower() == "debug"
    _quiet = not verbose
    if verbose:
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "DEBUG")
        return
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("PYTHONWARNINGS", "ignore")  # for the engine process vLLM starts
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")  # torch's C++ warnings
    warnings.filterwarnings("ignore")
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(logging.ERROR)


@contextmanager
def child_output_to(log: Path) -> Iterator[None]:
    """When quiet, processes started inside the block write their standard error to `log`: vLLM's
    engine processes print before any logging setting reaches them. Only from the main thread of
    a command: in a service, other threads' logs must keep going where they go."""
    if not _quiet or threading.current_thread() is not threading.main_thread():
        yield
        return
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        saved = os.dup(2)
        os.dup2(out.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
