"""Engines by name; heavy libraries are imported only by the engine that is built."""

from __future__ import annotations

from revisor.model.engines.base import Engine, EngineConfig
from revisor.model.errors import RevisorError

ENGINES = ("vllm", "openai", "transformers")


def make_engine(name: str, config: EngineConfig) -> Engine:
    if name == "vllm":
        from revisor.model.engines.vllm_local import VLLMEngine

        return VLLMEngine(config)
    if name == "openai":
        from revisor.model.engines.openai_http import OpenAIEngine

        return OpenAIEngine(config)
    if name == "transformers":
        from revisor.model.engines.hf import TransformersEngine

        return TransformersEngine(config)
    raise RevisorError(f"unknown engine {name!r}: choose one of {', '.join(ENGINES)}")
