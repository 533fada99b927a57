"""`revisor bench`: Exact Match of Revisor's strategies and engines beside published systems."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil
from tqdm import tqdm

from revisor.model.errors import RevisorError
from revisor.model.prompts import RETRIEVING
from revisor.model.reviser import Answer, Reviser
from revisor.model.schema import BrokenSyntax, Example
from revisor.model.settings import ModelSettings, model_settings
from revisor.training.datasets import load_dataset
from revisor.training.metrics import at_threshold, coverage_curve, exact_match, score_system
from revisor.training.report import render_report

CHUNK = 32  # requests handed to the engine at once: large enough to batch, small for progress


@dataclass(frozen=True)
class BenchConfig:
    dataset: str
    strategies: list[str]
    engines: list[str]
    models: list[str] = field(default_factory=lambda: ["embedded"])
    output: str = "runs/bench"
    limit: int | None = None
    settings: ModelSettings = field(default_factory=ModelSettings)
    """The model settings every run shares; each run sets its own model, engine and strategy."""
    prefix_cache: bool = True
    bounded: bool = True
    departures: bool = True
    batch_size: int = 8
    skip_malformed: bool = False

    def __post_init__(self):
        for run in self.runs():  # a bad strategy or engine fails before any model loads
            model_settings(**run)
        if set(RETRIEVING) & set(self.strategies) and _same_file(self.settings.pool or "", self.dataset):
            raise RevisorError("the --pool is the benchmark dataset itself: pick another pool")

    def runs(self) -> list[dict]:
        """The settings of each run, in order: every model, engine and strategy asked for."""
        shared = self.settings.model_dump(exclude_unset=True)
        return [shared | {"model": model, "engine": engine, "strategy": strategy}
                for model in self.models for engine in self.engines for strategy in self.strategies]

    def system_name(self, strategy: str, engine: str, model: str) -> str:
        name = f"revisor/{strategy}" + ("+persona" if self.settings.persona else "")
        name += f"@{engine}" if len(self.engines) > 1 else ""
        return name + (f" ({model})" if len(self.models) > 1 else "")


@dataclass
class Run:
    """One (engine, strategy) pass over the records."""

    system: str
    model: str
    engine: str
    strategy: str
    threshold: float = 0.0
    predictions: list[str] = field(default_factory=list)
    confidences: list[float | None] = field(default_factory=list)
    held_back: list[str | None] = field(default_factory=list)
    """Why a revision is never suggested whatever the threshold (it breaks the syntax); None: it may be."""
    startup_s: float = 0.0
    wall_s: float = 0.0
    output_tokens: int = 0
    prompt_tokens: int = 0
    peak_rss_mib: float = 0.0

    def throughput(self, n: int) -> dict:
        return {
            "engine": self.engine,
            "strategy": self.strategy,
            "examples": n,
            "wall_s": round(self.wall_s, 2),
            "engine_startup_s": round(self.startup_s, 2),
            "examples_per_s": round(n / self.wall_s, 3) if self.wall_s else None,
            "seconds_per_example": round(self.wall_s / n, 3),
            "output_tokens_per_s": round(self.output_tokens / self.wall_s, 1) if self.wall_s else None,
            "prompt_tokens": self.prompt_tokens,
            "output_tokens": self.output_tokens,
            "peak_rss_mib": round(self.peak_rss_mib, 1),
        }


class PeakMemory:
    """Peak resident memory of this process and its children (vLLM's engine runs in one)."""

    def __init__(self, interval_s: float = 0.2):
        self.interval_s = interval_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for proc in [me, *me.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total += proc.memory_info().rss
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval_s)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mib(self) -> float:
        return self.peak / 2**20


def run_bench(config: BenchConfig, make_reviser: Callable[[str, str, str], Reviser]) -> str:
    """Run every (model, engine, strategy), score them and the peers, write the report; return
    its table.

    `make_reviser(model, engine, strategy)` builds a reviser, with its calibration and threshold;
    its engine is closed before the next starts.
    """
    dataset = load_dataset(config.dataset, skip_malformed=config.skip_malformed)
    examples = dataset.examples[: config.limit]
    if not examples:
        raise RevisorError(f"{config.dataset} holds no records to score")
    runs = []
    for model in config.models:
        for engine_name in config.engines:
            for strategy in config.strategies:
                started = time.perf_counter()
                with PeakMemory() as memory:
                    reviser = make_reviser(model, engine_name, strategy)
                    reviser.bounded = config.bounded
                    reviser.departures = config.departures
                    name = reviser.strategy.name
                    run = Run(config.system_name(name, engine_name, model), model, engine_name, name,
                              reviser.min_confidence, startup_s=time.perf_counter() - started)
                    start = time.perf_counter()
                    for answer in revise_all(reviser, examples, run.system):
                        run.predictions.append(answer.code)
                        run.confidences.append(answer.confidence)
                        broken = isinstance(answer.parsed, BrokenSyntax)
                        run.held_back.append(answer.parsed.reason if broken else None)
                        run.output_tokens += answer.completion.output_tokens + answer.sampled_tokens
                        run.prompt_tokens += answer.completion.prompt_tokens
                    run.wall_s = time.perf_counter() - start
                    reviser.engine.close()
                    run.peak_rss_mib = memory.mib
                runs.append(run)
    return _write(config, examples, runs, dataset.skipped)


def revise_all(reviser: Reviser, examples: list[Example], description: str) -> list[Answer]:
    """Answers for every example, handed to the engine in chunks under a progress bar."""
    answers: list[Answer] = []
    with tqdm(total=len(examples), desc=description, unit="ex", leave=True) as bar:
        for i in range(0, len(examples), CHUNK):
            chunk = examples[i : i + CHUNK]
            answers += reviser.revise([e.task for e in chunk])
            bar.update(len(chunk))
    return answers


def confidence_summary(run: Run, examples: list[Example]) -> dict:
    """Coverage and precision at the run's threshold, the whole precision-coverage curve, and the
    revisions held back whatever the threshold (they break the syntax) and how many were exact."""
    correct = [exact_match(p, e.code_after) for p, e in zip(run.predictions, examples, strict=True)]
    broken = [ok for ok, reason in zip(correct, run.held_back, strict=True) if reason]
    return at_threshold(run.confidences, correct, run.threshold) | {
        "curve": coverage_curve(run.confidences, correct),
        "held_back_for_syntax": {"n": len(broken), "exact": sum(broken)}}


def _write(config: BenchConfig, examples: list[Example], runs: list[Run], skipped: list[str]) -> str:
    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    systems: dict[str, list[str]] = {run.system: run.predictions for run in runs}
    for peer in sorted({p for e in examples for p in e.peers}):
        if all(peer in e.peers for e in examples):
            systems[peer] = [e.peers[peer] for e in examples]
    scores = [score_system(name, examples, predictions) for name, predictions in systems.items()]
    confidences = {run.system: run.confidences for run in runs}
    held_back = {run.system: run.held_back for run in runs}
    with (output / "predictions.jsonl").open("w", encoding="utf-8") as out:
        for name, predictions in systems.items():
            for i, (example, prediction) in enumerate(zip(examples, predictions, strict=True)):
                row = {"id": example.id, "system": name, "prediction": prediction,
                       "reference": example.code_after,
                       "exact_match": exact_match(prediction, example.code_after)}
                if name in confidences:
                    row["confidence"] = confidences[name][i]
                if name in held_back and held_back[name][i]:
                    row["held_back"] = held_back[name][i]
                out.write(json.dumps(row) + "\n")
    n = len(examples)
    runs_by = {run.system: run for run in runs}
    throughput = {run.system: run.throughput(n) for run in runs}
    metrics = {
        "dataset": config.dataset,
        "n": n,
        "skipped_records": skipped,
        "systems": [asdict(s) | ({"confidence": confidence_summary(runs_by[s.name], examples)}
                                 if s.name in runs_by else {}) for s in scores],
        "throughput": throughput,
        "ratios": ratios(runs, n),
        "config": {k: v for k, v in asdict(config).items() if k != "settings"}
        | {"settings": config.settings.model_dump(exclude={"api_key"})},
    }
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return render_report(output, metrics, scores)


def ratios(runs: list[Run], n: int) -> dict[str, float]:
    """Side-by-side figures from the same run: engine and model speed ratios, few-shot's cost."""
    found = {}
    by_key = {(run.model, run.engine, run.strategy): run for run in runs if run.wall_s}
    models = list(dict.fromkeys(run.model for run in runs))
    engines = list(dict.fromkeys(run.engine for run in runs))
    for (model, engine, strategy), run in by_key.items():
        first_engine = by_key.get((model, engines[0], strategy))
        if engine != engines[0] and first_engine:
            found[f"{strategy}: {engines[0]} / {engine} examples per second"] = round(
                run.wall_s / first_engine.wall_s, 2)
        zero = by_key.get((model, engine, "zero-shot"))
        if strategy == "few-shot" and zero:
            found[f"{engine}: few-shot / zero-shot time per example"] = round(run.wall_s / zero.wall_s, 2)
    for model in models[1:]:
        for engine in engines:
            first = next((r for r in runs if (r.model, r.engine) == (models[0], engine) and r.wall_s), None)
            other = next((r for r in runs if (r.model, r.engine) == (model, engine) and r.wall_s), None)
            if first and other:
                found[f"{models[0]} / {model} examples per second ({engine})"] = round(
                    other.wall_s / first.wall_s, 2)
    return found


def _same_file(a: str, b: str) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False

