"""Building a reviser (engine + prompt strategy + calibration) from user-facing settings."""

from __future__ import annotations

from pathlib import Path

from revisor.model.adapters import adapter_config, check_adapter
from revisor.model.confidence import CALIBRATION_FILE, Calibration
from revisor.model.embedded import (
    DEFAULT_ADAPTER,
    EMBEDDED_BASE,
    is_default_model,
    resolve_model,
    revisor_home,
)
from revisor.model.engines.base import EngineConfig
from revisor.model.engines.registry import make_engine
from revisor.model.errors import RevisorError
from revisor.model.prompts import PromptStrategy, make_strategy
from revisor.model.reviser import Reviser

DEFAULT_POOL = "../shared/datasets/codereviewer/train.jsonl"
"""Where few-shot demonstrations come from unless told otherwise (never a test set)."""
AUTO = "auto"
"""The prompt strategy that follows the model: the fine-tuned format for the default model and
for adapters (both are trained on it), zero-shot for any other model."""


def resolve_strategy(name: str, engine: str, model: str | None, adapter: str | None) -> str:
    if name != AUTO:
        return name
    default = engine != "openai" and is_default_model(model)
    return "fine-tuned" if default or adapter else "zero-shot"


def engine_config(engine: str, model: str | None, adapter: str | None, base_url: str | None,
                  api_key: str, compile: bool, **tuning) -> EngineConfig:
    if engine == "openai":
        if not base_url:
            raise RevisorError("--engine openai needs --base-url (e.g. http://localhost:8000/v1)")
        served = "" if is_default_model(model) else model  # "": the server's first model
        return EngineConfig(model=served, adapter=adapter, base_url=base_url, api_key=api_key, **tuning)
    if adapter is not None:
        adapter_config(adapter)  # a missing adapter fails before the model is prepared
    # An adapter goes on the plain embedded model, not on the default that has one merged in.
    base = resolve_model(model or (EMBEDDED_BASE if adapter else None))
    if adapter is not None:
        check_adapter(adapter, base)
    return EngineConfig(model=base, adapter=adapter, compile=compile, **tuning)


def find_calibration(path: str | None, engine: str, model: str | None, adapter: str | None,
                     strategy: str) -> Calibration | None:
    """The calibration named, else the one beside the adapter (or shipped with the default model)
    when the prompt is the fine-tuned format it was fitted with; None: uncalibrated."""
    if path:
        return Calibration.load(path)
    if strategy != "fine-tuned":
        return None
    if adapter is None and engine != "openai" and is_default_model(model):
        beside = DEFAULT_ADAPTER / CALIBRATION_FILE
    else:
        beside = Path(adapter) / CALIBRATION_FILE if adapter else None
    return Calibration.load(beside) if beside and beside.is_file() else None


def build_strategy(name: str, persona: bool, pool: str, shots: int) -> PromptStrategy:
    retriever = None
    if name == "few-shot":
        from revisor.model.retrieval import BM25Retriever
        from revisor.training.datasets import load_dataset
        from revisor.training.splits import refuse_benchmark

        refuse_benchmark(pool, "few-shot retrieval")
        retriever = BM25Retriever(load_dataset(pool).examples, revisor_home() / "index")
    return make_strategy(name, persona=persona, retriever=retriever, k=shots)


def build_reviser(engine: str, model, adapter, base_url, api_key, strategy_name, persona, pool,
                  shots, compile, calibration=None, min_confidence=None, **tuning) -> Reviser:
    """A reviser from the command-line options; the threshold defaults to the calibration's."""
    strategy_name = resolve_strategy(strategy_name, engine, model, adapter)
    strategy = build_strategy(strategy_name, persona, pool, shots)
    config = engine_config(engine, model, adapter, base_url, api_key, compile, **tuning)
    calibrated = find_calibration(calibration, engine, model, adapter, strategy_name)
    if min_confidence is None:
        min_confidence = calibrated.threshold if calibrated else 0.0
    return Reviser(make_engine(engine, config), strategy, calibration=calibrated,
                   min_confidence=min_confidence)
