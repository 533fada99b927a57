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
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from revisor.model.confidence import FEATURES, Calibration, fit
from revisor.model.errors import RevisorError
from revisor.model.reviser import Reviser
from revisor.model.schema import Example
from revisor.training.bench import revise_all
from revisor.training.datasets import file_digest, load_dataset, provenance, revisor_version
from revisor.training.metrics import (
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
Features = Sequence[float]


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


def best_features(rows: list[tuple[float, ...]], labels: list[bool],
                  candidates: Sequence[str] = FEATURES) -> tuple[tuple[str, ...], list[float]]:
    """The subset of the `candidates` whose out-of-fold confidences are likeliest, and those
    confidences; of subsets within `PARSIMONY` of the likeliest, the smallest: on a handful of
    exact answers a difference that small is noise, and fewer weights are steadier on new records.
    Features some row lacks (NaN: agreement, where one answer was asked for) are not candidates."""
    known = [name for i, name in enumerate(FEATURES)
             if name in candidates and all(math.isfinite(row[i]) for row in rows)]
    subsets = [combo for k in range(1, len(known) + 1) for combo in itertools.combinations(known, k)]
    scored = [(uses, oof, log_likelihood(oof, labels))
              for uses in subsets for oof in [out_of_fold(rows, labels, uses)]]
    best = max(likelihood for _, _, likelihood in scored)
    uses, oof, _ = min((s for s in scored if s[2] >= best - PARSIMONY), key=lambda s: (len(s[0]), -s[2]))
    return uses, oof


def run_calibration(make_reviser: Callable[[], Reviser], dataset: str, target_precision: float,
                    output: Path, limit: int | None = None, fit_also: Sequence[str] = (),
                    answers: Path | None = None, asked: dict | None = None,
                    candidates: Sequence[str] = FEATURES) -> str:
    """Answer the dev records (and those of `fit_also`), fit on some of the `candidates`
    features, choose the threshold on the dev records, write `output`; return the report.

    `fit_also` are more held-out records the confidence is fitted on, but not the threshold: a
    threshold sets coverage, which depends on the mix of records, so it is placed on the dev split
    alone, drawn like the records the model will answer. With `answers`, each dataset's answers
    are kept in that directory, and a later run on the same records fits from them without the
    model (another target precision costs seconds, not a pass over the records), as long as the
    model was `asked` the same way (the model settings; answers kept otherwise are refused).
    """
    examples = load_dataset(dataset).examples[:limit]
    if len(examples) < 2 * FOLDS:
        raise RevisorError(f"{dataset}: {len(examples)} records are too few to calibrate on")
    sets = [(dataset, examples), *((path, load_dataset(path).examples) for path in fit_also)]
    dev, *more = answer_all(sets, make_reviser, answers, asked or {})
    if any(kept.get("samples", 1) != dev.get("samples", 1) for kept in more):
        raise RevisorError(f"the kept answers in {answers} were given with different --samples: remove them")
    extra = [a for kept in more for a in kept["answers"]]
    about = {"revisor_version": revisor_version(), "dataset": provenance(dataset, len(examples)),
             "model": dev["model"], "strategy": dev["strategy"], "samples": dev.get("samples", 1),
             "candidates": list(candidates),
             **({"fit_also": [provenance(path, len(kept["answers"])) for path, kept in zip(fit_also, more,
                                                                                          strict=True)]}
                if fit_also else {})}
    calibration, confidences, quality = calibrate(
        [a["features"] for a in dev["answers"]], [a["exact"] for a in dev["answers"]], target_precision,
        about, [a["features"] for a in extra], [a["exact"] for a in extra], candidates)
    output.parent.mkdir(parents=True, exist_ok=True)
    calibration.save(output)
    return report(calibration, confidences, [a["exact"] for a in dev["answers"]], quality, output)


def answer_all(sets: list[tuple[str, list[Example]]], make_reviser: Callable[[], Reviser],
               directory: Path | None, asked: dict) -> list[dict]:
    """The model's answers to each (path, records): those kept in `directory`, the rest answered
    now (the model is loaded only if some are) and kept there."""
    kept = [load_answers(directory, path, examples, asked) if directory else None for path, examples in sets]
    if all(kept):
        return kept
    reviser = make_reviser()
    reviser.min_confidence = 0.0  # every revision counts, whatever threshold the model has now
    try:
        for k, (path, examples) in enumerate(sets):
            if kept[k] is None:
                kept[k] = answer(reviser, path, examples) | {"asked": asked}
                if directory:
                    save_answers(kept[k], answers_file(directory, path, examples))
    finally:
        reviser.engine.close()
    return kept


def answer(reviser: Reviser, dataset: str, examples: list[Example]) -> dict:
    """The model's answer to every record: its features, and whether it was exact."""
    answers = revise_all(reviser, examples, f"calibrate {Path(dataset).name}")
    return {"dataset": dataset, "sha256": file_digest(dataset), "model": reviser.engine.description,
            "strategy": reviser.strategy.name, "samples": reviser.samples, "features": list(FEATURES),
            "answers": [{"id": e.id, "exact": exact_match(a.code, e.code_after), "features": a.features}
                        for a, e in zip(answers, examples, strict=True)]}


def answers_file(directory: Path, dataset: str, examples: list[Example]) -> Path:
    return directory / f"{Path(dataset).stem}-{file_digest(dataset)[:12]}-{len(examples)}.json"


def save_answers(kept: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(kept) + "\n")
    os.replace(partial, path)


def load_answers(directory: Path, dataset: str, examples: list[Example], asked: dict) -> dict | None:
    """Answers kept by an earlier run on these very records, asked the same way; None where there
    are none yet."""
    path = answers_file(directory, dataset, examples)
    if not path.exists():
        return None
    try:
        kept = json.loads(path.read_text())
        same = [a["id"] for a in kept["answers"]] == [e.id for e in examples]
        current = kept["features"] == list(FEATURES)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise RevisorError(f"{path} is not a file of kept answers ({error}): remove it") from None
    if not same or not current:
        raise RevisorError(f"{path} holds answers to other records or with other features: remove it "
                           "to answer again")
    if kept.get("asked", {}) != asked:
        raise RevisorError(f"{path} holds answers given with other model settings ({kept.get('asked', {})}): "
                           "remove it to answer again")
    return kept


def calibrate(features: list[Features | None], correct: list[bool], target_precision: float,
              about: dict, more_features: Sequence[Features | None] = (),
              more_correct: Sequence[bool] = (), candidates: Sequence[str] = FEATURES,
              ) -> tuple[Calibration, list[float | None], dict]:
    """From each dev record's features (None: no revision) and whether its answer was exact, and
    those of more held-out records to fit on: the calibration (its threshold placed on the dev
    records), the dev records' confidences, and the out-of-fold reliability."""
    pairs = [(values, ok) for values, ok in zip([*features, *more_features], [*correct, *more_correct],
                                                strict=True) if values is not None]
    # A feature some answer has is one that was asked for; an answer without a number for it (an
    # infinite log-probability) cannot be fitted on, and is never suggested (`Calibration.confidence`).
    asked = [i for i in range(len(FEATURES)) if any(math.isfinite(values[i]) for values, _ in pairs)]
    pairs = [(values, ok) for values, ok in pairs if all(math.isfinite(values[i]) for i in asked)]
    rows, labels = [values for values, _ in pairs], [ok for _, ok in pairs]
    if sum(labels) < 2:
        raise RevisorError(f"{about['dataset']}: the model answered {sum(labels)} record(s) exactly; a "
                           "confidence cannot be fitted on that")
    uses, held_out = best_features(rows, labels, candidates)
    fitted = fit(rows, labels, uses)
    # The threshold is placed on the final fit's own confidences: out-of-fold ones come from five
    # fits scaled apart, whose ranking across folds is not the final one's.
    confidences = [None if values is None else fitted.confidence(values) for values in features]
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
        **about, "records": len(features), "revised": sum(v is not None for v in features),
        "fitted_on": len(rows), "exact_match": sum(correct) / len(features),
        "target_precision": target_precision, "coverage": posted["coverage"],
        "precision": posted["precision"], "posted": posted["posted"], "exact": posted["exact"],
        "precision_interval": posted["precision_interval"], "reached": chosen is not None,
        "ece": quality["ece"], "brier": quality["brier"],
    }
    return replace(fitted, threshold=threshold, figures=figures), confidences, quality


def report(calibration: Calibration, confidences: list[float | None], correct: list[bool],
           quality: dict, output: Path) -> str:
    f = calibration.figures
    fitted_on = (f"the dev records and {len(f['fit_also'])} more held-out file(s), {f['fitted_on']} revised "
                 "records" if f.get("fit_also") else "the dev records")
    samples = f.get("samples", 1)
    lines = [
        f"{f['model']} ({f['strategy']}{f', {samples} answers a record' if samples > 1 else ''}).",
        f"{f['records']} dev records: {f['revised']} revised, Exact Match {f['exact_match']:.1%} "
        "(all answers posted).",
        "",
        "| coverage | precision |", "|---:|---:|",
        *(f"| {c:.0%} | {precision_at_coverage(confidences, correct, c):.1%} |" for c in COVERAGES),
        "",
        f"Features kept (the likeliest out of fold, the fewest among near ties) of "
        f"{', '.join(f.get('candidates', FEATURES))}: {', '.join(calibration.uses)}.",
        f"Fitted on {fitted_on}. Reliability (out-of-fold, {FOLDS} folds, equal-count bins of "
        "the revised records fitted on):",
        "| records | mean confidence | exactly right |", "|---:|---:|---:|",
        *(f"| {b['n']} | {b['mean_confidence']:.3f} | {b['exact_rate']:.3f} |" for b in quality["bins"]),
        f"Expected calibration error {quality['ece']:.3f}, Brier score {quality['brier']:.3f}.",
        "",
    ]
    low, high = f["precision_interval"]
    measured = (f"precision {f['precision']:.1%} ({f['exact']} of {f['posted']} exact) at coverage "
                f"{f['coverage']:.1%}")
    if f["reached"]:
        lines.append(f"Threshold {calibration.threshold:.3f} reaches the target precision "
                     f"{f['target_precision']:.0%}: {measured}.")
    else:
        lines.append(f"No threshold reaches precision {f['target_precision']:.0%} on this split: threshold "
                     f"{calibration.threshold:.3f} is the most precise that covers {MIN_COVERAGE:.0%} or "
                     f"more, {measured}.")
    lines.append(f"On records like these, the precision at this threshold lies between {low:.0%} and "
                 f"{high:.0%} (95% interval, from {f['posted']} suggestions); more dev records narrow it.")
    lines.append(f"Wrote {output}.")
    return "\n".join(lines) + "\n"
