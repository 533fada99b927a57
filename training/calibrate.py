"""`revisor calibrate`: fit the confidence of suggestions on a dev split and choose the threshold
that reaches a target precision.

The model answers every dev record once. Logistic fits (`model.confidence.fit`) on every subset
of the features are judged on out-of-fold confidences (each record scored by a fit that did not
see it): the subset with the best log-likelihood is kept (the smallest among near ties), and its
reliability is reported out of fold, as what to expect on new records. The calibration written
is fitted on all the records, and the threshold is placed on its confidences. A few hundred dev
records hold only a handful of exact answers: fewer features often generalise better, and the
data says which.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from pathlib import Path

from model.confidence import FEATURES, Calibration, fit
from model.errors import RevisorError
from model.reviser import Reviser
from training.bench import revise_all
from training.datasets import load_dataset
from training.metrics import (
    at_threshold,
    coverage_curve,
    exact_match,
    precision_at_coverage,
    reliability,
    threshold_for,
)

FOLDS = 5
PARSIMONY = 1.0
"""Log-likelihood units by which a smaller feature subset may trail the likeliest and be kept."""
MIN_COVERAGE = 0.05
"""The least coverage a threshold is chosen at: over fewer records, precision is noise."""
COVERAGES = (0.05, 0.10, 0.20, 0.50, 1.00)


def out_of_fold(rows: list[tuple[float, ...]], labels: list[bool], uses: tuple[str, ...] = FEATURES,
                folds: int = FOLDS) -> list[float]:
    """Each row's confidence from a fit on the other folds."""
    scores = [0.0] * len(rows)
    for k in range(folds):
        held = [i for i in range(len(rows)) if i % folds == k]
        rest = [i for i in range(len(rows)) if i % folds != k]
        fitted = fit([rows[i] for i in rest], [labels[i] for i in rest], uses)
        for i in held:
            scores[i] = fitted.confidence(rows[i])
    return scores


def log_likelihood(confidences: list[float], labels: list[bool]) -> float:
    return sum(math.log(max(1e-9, c if ok else 1.0 - c)) for c, ok in zip(confidences, labels, strict=True))


def best_features(rows: list[tuple[float, ...]], labels: list[bool]) -> tuple[tuple[str, ...], list[float]]:
    """The subset of `FEATURES` whose out-of-fold confidences are likeliest, and those confidences;
    of subsets within `PARSIMONY` of the likeliest, the smallest: on a handful of exact answers a
    difference that small is noise, and fewer weights are steadier on new records."""
    subsets = [combo for k in range(1, len(FEATURES) + 1) for combo in itertools.combinations(FEATURES, k)]
    scored = [(uses, oof, log_likelihood(oof, labels))
              for uses in subsets for oof in [out_of_fold(rows, labels, uses)]]
    best = max(likelihood for _, _, likelihood in scored)
    uses, oof, _ = min((s for s in scored if s[2] >= best - PARSIMONY), key=lambda s: (len(s[0]), -s[2]))
    return uses, oof


def run_calibration(reviser: Reviser, dataset: str, target_precision: float, output: Path,
                    limit: int | None = None) -> str:
    """Answer the dev records, fit, choose the threshold, write `output`; return the report."""
    examples = load_dataset(dataset).examples[:limit]
    if len(examples) < 2 * FOLDS:
        raise RevisorError(f"{dataset}: {len(examples)} records are too few to calibrate on")
    reviser.min_confidence = 0.0  # every revision counts, whatever threshold the model has now
    answers = revise_all(reviser, examples, "calibrate")
    correct = [exact_match(a.code, e.code_after) for a, e in zip(answers, examples, strict=True)]
    about = {"dataset": dataset, "model": reviser.engine.description, "strategy": reviser.strategy.name}
    calibration, confidences, quality = calibrate([a.features for a in answers], correct,
                                                  target_precision, about)
    output.parent.mkdir(parents=True, exist_ok=True)
    calibration.save(output)
    return report(calibration, confidences, correct, quality, output)


def calibrate(features: list[tuple[float, ...] | None], correct: list[bool], target_precision: float,
              about: dict) -> tuple[Calibration, list[float | None], dict]:
    """From each record's features (None: no revision) and whether its answer was exact: the
    calibration, the out-of-fold confidences and their reliability."""
    revised = [i for i, values in enumerate(features) if values is not None]
    rows = [features[i] for i in revised]
    labels = [correct[i] for i in revised]
    if sum(labels) < 2:
        raise RevisorError(f"{about['dataset']}: the model answered {sum(labels)} record(s) exactly; a "
                           "confidence cannot be fitted on that")
    uses, held_out = best_features(rows, labels)
    fitted = fit(rows, labels, uses)
    # The threshold is placed on the final fit's own confidences: out-of-fold ones come from five
    # fits scaled apart, whose ranking across folds is not the final one's.
    confidences: list[float | None] = [None] * len(features)
    for i, values in zip(revised, rows, strict=True):
        confidences[i] = fitted.confidence(values)
    # Points covering a handful of records say nothing about precision: they are not candidates.
    curve = [p for p in coverage_curve(confidences, correct) if p["threshold"] > 0
             and p["coverage"] >= MIN_COVERAGE]
    chosen = threshold_for(curve, target_precision)
    # Out of reach: the most precise threshold that still suggests something now and then.
    fallback = max(curve, key=lambda p: p["precision"], default={"threshold": 1.0})
    threshold = (chosen or fallback)["threshold"]
    posted = at_threshold(confidences, correct, threshold)
    quality = reliability(held_out, labels)
    figures = {
        **about, "records": len(features), "revised": len(revised),
        "exact_match": sum(correct) / len(features), "target_precision": target_precision,
        "coverage": posted["coverage"], "precision": posted["precision"],
        "reached": chosen is not None, "ece": quality["ece"], "brier": quality["brier"],
    }
    return replace(fitted, threshold=threshold, figures=figures), confidences, quality


def report(calibration: Calibration, confidences: list[float | None], correct: list[bool],
           quality: dict, output: Path) -> str:
    f = calibration.figures
    lines = [
        f"{f['records']} dev records: {f['revised']} revised, Exact Match {f['exact_match']:.1%} "
        "(all answers posted).",
        "",
        "| coverage | precision |", "|---:|---:|",
        *(f"| {c:.0%} | {precision_at_coverage(confidences, correct, c):.1%} |" for c in COVERAGES),
        "",
        f"Features kept (the likeliest out of fold, the fewest among near ties): "
        f"{', '.join(calibration.uses)}.",
        f"Reliability (out-of-fold, {FOLDS} folds, equal-count bins of revised records):",
        "| records | mean confidence | exactly right |", "|---:|---:|---:|",
        *(f"| {b['n']} | {b['mean_confidence']:.3f} | {b['exact_rate']:.3f} |" for b in quality["bins"]),
        f"Expected calibration error {quality['ece']:.3f}, Brier score {quality['brier']:.3f}.",
        "",
    ]
    if f["reached"]:
        lines.append(f"Threshold {calibration.threshold:.3f} reaches the target precision "
                     f"{f['target_precision']:.0%}: precision {f['precision']:.1%} at coverage "
                     f"{f['coverage']:.1%}.")
    else:
        lines.append(f"No threshold reaches precision {f['target_precision']:.0%} on this split: threshold "
                     f"{calibration.threshold:.3f} is the most precise that covers {MIN_COVERAGE:.0%} or "
                     f"more, precision {f['precision']:.1%} at coverage {f['coverage']:.1%}.")
    lines.append(f"Wrote {output}.")
    return "\n".join(lines) + "\n"
