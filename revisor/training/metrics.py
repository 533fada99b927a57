"""Scoring predictions as CodeReviewer does: Exact Match up to whitespace, and BLEU-4."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import sacrebleu

from revisor.model.parsing import same_code
from revisor.model.schema import Example


def exact_match(prediction: str, reference: str) -> bool:
    """CodeReviewer's Exact Match: equal once every whitespace run is collapsed.

    The reference is code without diff markers (`training.datasets` strips them when loading),
    the prediction is taken as it is.
    """
    return same_code(prediction, reference)


@dataclass(frozen=True)
class SystemScore:
    name: str
    n: int
    exact_match: float
    bleu: float
    unchanged: float
    empty: float


def score_system(name: str, examples: Sequence[Example], predictions: Sequence[str]) -> SystemScore:
    """Score one system's predictions on the same rows; fractions are in [0, 1], BLEU in [0, 100]."""
    n = len(examples)
    if n != len(predictions) or n == 0:
        raise ValueError(f"{name}: {len(predictions)} predictions for {n} examples")
    hits = sum(exact_match(p, e.code_after) for p, e in zip(predictions, examples, strict=True))
    unchanged = sum(same_code(p, e.code_before) for p, e in zip(predictions, examples, strict=True))
    empty = sum(not p.strip() for p in predictions)
    bleu = sacrebleu.corpus_bleu(
        [" ".join(p.split()) for p in predictions], [[" ".join(e.code_after.split()) for e in examples]]
    ).score
    return SystemScore(name, n, hits / n, bleu, unchanged / n, empty / n)


def coverage_curve(confidences: Sequence[float | None], correct: Sequence[bool]) -> list[dict]:
    """Precision against coverage as the confidence threshold falls, one point per distinct
    confidence. A row without a revision (None) counts as confidence 0, so the last point covers
    every row and its precision is the full-coverage Exact Match."""
    n = len(correct)
    ranked = sorted(zip((c or 0.0 for c in confidences), correct, strict=True), key=lambda r: -r[0])
    points, hits = [], 0
    for i, (confidence, ok) in enumerate(ranked):
        hits += ok
        if i + 1 == n or ranked[i + 1][0] != confidence:
            points.append({"threshold": confidence, "coverage": (i + 1) / n,
                           "precision": hits / (i + 1)})
    return points


def at_threshold(confidences: Sequence[float | None], correct: Sequence[bool], threshold: float) -> dict:
    """What a threshold posts: the fraction of all rows with a revision at least that confident
    (coverage), the Exact Match among them (precision), how many that is, and the 95% interval
    of that precision."""
    posted = [ok for c, ok in zip(confidences, correct, strict=True) if c is not None and c >= threshold]
    return {"threshold": threshold, "coverage": len(posted) / len(correct),
            "precision": sum(posted) / len(posted) if posted else 0.0,
            "posted": len(posted), "exact": sum(posted),
            "precision_interval": wilson_interval(sum(posted), len(posted))}


def wilson_interval(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% by default): how far the precision measured
    on `n` suggestions may be from the precision on records like them. (0, 1) when n is 0."""
    if n == 0:
        return (0.0, 1.0)
    rate, spread = hits / n, z * z / n
    centre = (rate + spread / 2) / (1 + spread)
    half = z * math.sqrt(rate * (1 - rate) / n + spread / (4 * n)) / (1 + spread)
    return (max(0.0, centre - half), min(1.0, centre + half))


def precision_at_coverage(confidences: Sequence[float | None], correct: Sequence[bool],
                          fraction: float) -> float:
    """Exact Match among the most confident `fraction` of the rows."""
    ranked = sorted(zip((c or 0.0 for c in confidences), correct, strict=True), key=lambda r: -r[0])
    top = ranked[: max(1, round(fraction * len(ranked)))]
    return sum(ok for _, ok in top) / len(top)


def threshold_for(curve: Sequence[dict], target_precision: float) -> dict | None:
    """The curve's point of widest coverage whose precision reaches the target (None if none)."""
    reaching = [p for p in curve if p["precision"] >= target_precision]
    return max(reaching, key=lambda p: p["coverage"]) if reaching else None


def reliability(confidences: Sequence[float], correct: Sequence[bool], bins: int = 5) -> dict:
    """How well confidences match outcomes: equal-count bins (mean confidence against the rate of
    exact answers), the expected calibration error and the Brier score."""
    ranked = sorted(zip(confidences, correct, strict=True))
    n = len(ranked)
    table = []
    for b in range(bins):
        part = ranked[b * n // bins : (b + 1) * n // bins]
        if part:
            table.append({"n": len(part), "mean_confidence": sum(c for c, _ in part) / len(part),
                          "exact_rate": sum(ok for _, ok in part) / len(part)})
    ece = sum(row["n"] / n * abs(row["mean_confidence"] - row["exact_rate"]) for row in table) if n else 0.0
    brier = sum((c - ok) ** 2 for c, ok in ranked) / n if n else 0.0
    return {"bins": table, "ece": ece, "brier": brier}
