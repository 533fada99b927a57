"""`revisor calibrate`: fit the confidence of suggestions on a dev split and choose the threshold
that reaches a target precision.

The model answers every dev record once. The logistic fit (`model.confidence.fit`) is judged on
out-of-fold confidences (each record scored by a fit that did not see it), and the threshold is
chosen on them too, so the figures printed are what to expect on new records; the calibration
written is then fitted on all of them.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from model.confidence import Calibration, fit
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
COVERAGES = (0.05, 0.10, 0.20, 0.50, 1.00)


def out_of_fold(rows: list[tuple[float, ...]], labels: list[bool], folds: int = FOLDS) -> list[float]:
    """Each row's confidence from a fit on the other folds."""
    scores = [0.0] * len(rows)
    for k in range(folds):
        held = [i for i in range(len(rows)) if i % folds == k]
        rest = [i for i in range(len(rows)) if i % folds != k]
        fitted = fit([rows[i] for i in rest], [labels[i] for i in rest])
        for i in held:
            scores[i] = fitted.confidence(rows[i])
    return scores


def run_calibration(reviser: Reviser, dataset: str, target_precision: float, output: Path,
                    limit: int | None = None) -> str:
    """Answer the dev records, fit, choose the threshold, write `output`; return the report."""
    examples = load_dataset(dataset).examples[:limit]
    if len(examples) < 2 * FOLDS:
        raise RevisorError(f"{dataset}: {len(examples)} records are too few to calibrate on")
    reviser.min_confidence = 0.0  # every revision counts, whatever threshold the model has now
    answers = revise_all(reviser, examples, "calibrate")
    correct = [exact_match(a.code, e.code_after) for a, e in zip(answers, examples, strict=True)]
    revised = [i for i, a in enumerate(answers) if a.features is not None]
    rows = [answers[i].features for i in revised]
    labels = [correct[i] for i in revised]
    if sum(labels) < 2:
        raise RevisorError(f"{dataset}: the model answered {sum(labels)} record(s) exactly; a "
                           "confidence cannot be fitted on that")
    held_out = out_of_fold(rows, labels)
    confidences: list[float | None] = [None] * len(examples)
    for i, confidence in zip(revised, held_out, strict=True):
        confidences[i] = confidence
    curve = coverage_curve(confidences, correct)
    chosen = threshold_for([p for p in curve if p["threshold"] > 0], target_precision)
    threshold = chosen["threshold"] if chosen else 1.0
    posted = at_threshold(confidences, correct, threshold)
    quality = reliability(held_out, labels)
    figures = {
        "dataset": dataset, "records": len(examples), "revised": len(revised),
        "exact_match": sum(correct) / len(examples), "target_precision": target_precision,
        "coverage": posted["coverage"], "precision": posted["precision"],
        "reached": chosen is not None, "ece": quality["ece"], "brier": quality["brier"],
        "model": reviser.engine.description, "strategy": reviser.strategy.name,
    }
    calibration = replace(fit(rows, labels), threshold=threshold, figures=figures)
    output.parent.mkdir(parents=True, exist_ok=True)
    calibration.save(output)
    return report(calibration, confidences, correct, quality, output)


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
        lines.append(f"No threshold reaches precision {f['target_precision']:.0%} on this split: "
                     "threshold 1.0 (nothing is suggested). Lower --target-precision.")
    lines.append(f"Wrote {output}.")
    return "\n".join(lines) + "\n"
