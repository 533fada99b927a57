"""Scoring predictions as CodeReviewer does: Exact Match up to whitespace, and BLEU-4."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sacrebleu

from model.parsing import same_code
from model.schema import Example


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
