"""Building a reviser (engine + prompt strategy + calibration) from `ModelSettings`: the one way
every command and the bot get theirs."""

from __future__ import annotations

from pathlib import Path

from revisor.model.adapters import adapter_config, check_adapter, trained_shots
from revisor.model.confidence import CALIBRATION_FILE, Calibration
from revisor.model.embedded import (
    DEFAULT_ADAPTER,
    EMBEDDED,
    EMBEDDED_BASE,
    is_default_model,
    resolve_model,
    revisor_home,
)
from revisor.model.engines.base import Engine, EngineConfig
from revisor.model.engines.registry import make_engine
from revisor.model.errors import RevisorError
from revisor.model.prompts import FINE_TUNED, RETRIEVING, PromptStrategy, make_strategy
from revisor.model.reviser import Reviser
from revisor.model.settings import AUTO, ModelSettings


def trained_adapter(settings: ModelSettings) -> Path | None:
    """Where the adapter the model answers with lies: the one given (with the openai engine, a
    served module's name, which lies nowhere here), or the default model's; None: no adapter."""
    if settings.adapter:
        return Path(settings.adapter)
    return DEFAULT_ADAPTER if settings.engine != "openai" and is_default_model(settings.model) else None


def resolve_strategy(settings: ModelSettings) -> str:
    """`--strategy`, else the template the adapter was trained on, else zero-shot."""
    if settings.strategy != AUTO:
        return settings.strategy
    adapter = trained_adapter(settings)
    if adapter is None:
        return "zero-shot"
    return "fine-tuned+retrieval" if trained_shots(adapter) else "fine-tuned"


def chosen_model(settings: ModelSettings) -> str:
    """The model asked for: `--model`, else the plain embedded model for an adapter (the base
    `revisor train` trains on), else the default."""
    return settings.model or (EMBEDDED_BASE if settings.adapter else EMBEDDED)


def engine_config(settings: ModelSettings, **tuning) -> EngineConfig:
    if settings.engine == "openai":
        if not settings.base_url:
            raise RevisorError("the openai engine needs --base-url / REVISOR_BASE_URL "
                               "(e.g. http://localhost:8000/v1)")
        served = "" if is_default_model(settings.model) else settings.model  # "": the server's first
        return EngineConfig(model=served, adapter=settings.adapter, base_url=settings.base_url,
                            api_key=settings.api_key or "EMPTY", **tuning)
    adapter = settings.adapter
    if adapter is not None:
        adapter_config(adapter)  # a missing adapter fails before the model is prepared
    base = resolve_model(chosen_model(settings))
    if adapter is not None:
        check_adapter(adapter, base)
    return EngineConfig(model=base, adapter=adapter, compile=settings.compile, **tuning)


def build_engine(settings: ModelSettings, **tuning) -> Engine:
    return make_engine(settings.engine, engine_config(settings, **tuning))


def find_calibration(settings: ModelSettings, strategy: str) -> Calibration | None:
    """The calibration named, else the one beside the adapter (or shipped with the default model)
    when the prompt is the fine-tuned format it was fitted with; None: uncalibrated."""
    if settings.calibration:
        return Calibration.load(settings.calibration)
    adapter = trained_adapter(settings)
    if strategy not in FINE_TUNED or adapter is None:
        return None
    beside = adapter / CALIBRATION_FILE
    return Calibration.load(beside) if beside.is_file() else None


def build_strategy(name: str, settings: ModelSettings) -> PromptStrategy:
    retriever = None
    adapter = trained_adapter(settings)
    shots = settings.shots or (adapter and trained_shots(adapter)) or 3
    if name in RETRIEVING:
        if not settings.pool:
            raise RevisorError(f"{name} needs --pool / REVISOR_POOL: a file of review-to-revision "
                               "pairs to retrieve demonstrations from")
        from revisor.model.retrieval import BM25Retriever
        from revisor.training.datasets import load_dataset
        from revisor.training.splits import refuse_benchmark

        refuse_benchmark(settings.pool, "retrieval")
        retriever = BM25Retriever(load_dataset(settings.pool).examples, revisor_home() / "index")
    return make_strategy(name, persona=settings.persona, retriever=retriever, k=shots)


def build_reviser(settings: ModelSettings, engine: Engine | None = None, **tuning) -> Reviser:
    """A reviser for `settings`, on `engine` if given (the bot shares one between prompt
    strategies), else on a new one; the threshold defaults to the calibration's."""
    strategy_name = resolve_strategy(settings)
    strategy = build_strategy(strategy_name, settings)
    calibrated = find_calibration(settings, strategy_name)
    if engine is None:
        engine = build_engine(settings, **tuning)
    threshold = settings.min_confidence
    if threshold is None:
        threshold = calibrated.threshold if calibrated else 0.0
    return Reviser(engine, strategy, calibration=calibrated, min_confidence=threshold,
                   samples=chosen_samples(settings, calibrated))


def chosen_samples(settings: ModelSettings, calibration: Calibration | None) -> int:
    """`--samples`, else as many as the calibration was fitted with; a calibration that weighs
    agreement needs several answers to weigh."""
    samples = settings.samples or (calibration.samples if calibration else 1)
    if calibration is not None and "agreement" in calibration.uses and samples < 2:
        raise RevisorError(f"the calibration weighs how many of {calibration.samples} answers agree: "
                           "--samples / REVISOR_SAMPLES must be 2 or more")
    return samples
