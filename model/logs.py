"""Quiet by default: a user sees Revisor's answer and progress, not its libraries' logs.

vLLM (and its engine process, which inherits the environment), transformers and torch log and
warn freely; unless asked for with `--verbose` or REVISOR_LOG_LEVEL=debug, only their errors show.
"""

from __future__ import annotations

import logging
import os
import warnings

LIBRARIES = ("vllm", "transformers", "torch", "huggingface_hub", "peft", "accelerate", "httpx")


def configure_quiet(verbose: bool = False) -> None:
    verbose = verbose or os.environ.get("REVISOR_LOG_LEVEL", "").lower() == "debug"
    if verbose:
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "DEBUG")
        return
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("PYTHONWARNINGS", "ignore")  # for the engine process vLLM starts
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")  # torch's C++ warnings (NUMA binding, …)
    warnings.filterwarnings("ignore")
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(logging.ERROR)
