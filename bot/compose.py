"""Building a reviser (engine + prompt strategy) from user-facing settings."""

from __future__ import annotations

from model.adapters import adapter_config, check_adapter
from model.embedded import resolve_model, revisor_home
from model.engines.base import EngineConfig
from model.engines.registry import make_engine
from model.errors import RevisorError
from model.prompts import PromptStrategy, make_strategy
from model.reviser import Reviser

DEFAULT_POOL = "../shared/datasets/codereviewer/train.jsonl"
"""Where few-shot demonstrations come from unless told otherwise (never a test set)."""


def engine_config(engine: str, model: str | None, adapter: str | None, base_url: str | None,
                  api_key: str, compile: bool, **tuning) -> EngineConfig:
    if engine == "openai":
        if not base_url:
            raise RevisorError("--engine openai needs --base-url (e.g. http://localhost:8000/v1)")
        return EngineConfig(model=model or "", adapter=adapter, base_url=base_url, api_key=api_key,
                            **tuning)
    if adapter is not None:
        adapter_config(adapter)  # a missing adapter fails before the model is prepared
    base = resolve_model(model)
    if adapter is not None:
        check_adapter(adapter, base)
    return EngineConfig(model=base, adapter=adapter, compile=compile, **tuning)


def build_strategy(name: str, persona: bool, pool: str, shots: int) -> PromptStrategy:
    retriever = None
    if name == "few-shot":
        from model.retrieval import BM25Retriever
        from training.datasets import load_dataset

        retriever = BM25Retriever(load_dataset(pool).examples, revisor_home() / "index")
    return make_strategy(name, persona=persona, retriever=retriever, k=shots)


def build_reviser(engine: str, model, adapter, base_url, api_key, strategy_name, persona, pool,
                  shots, compile) -> Reviser:
    strategy = build_strategy(strategy_name, persona, pool, shots)
    config = engine_config(engine, model, adapter, base_url, api_key, compile)
    return Reviser(make_engine(engine, config), strategy)
