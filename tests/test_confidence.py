"""Confidence: features, the logistic calibration, precision against coverage, and the guards that
keep the benchmark out of calibration and training."""

import json
import math
import random
import shutil
from dataclasses import replace

import pytest

from revisor.model.confidence import Calibration, features, fit, grounding, uncalibrated_confidence
from revisor.model.engines.base import logprobs_within
from revisor.model.errors import RevisorError
from revisor.model.prompts import ZeroShot
from revisor.model.reviser import Reviser
from revisor.training.calibrate import calibrate, run_calibration
from revisor.training.metrics import (
    at_threshold,
    coverage_curve,
    precision_at_coverage,
    reliability,
    threshold_for,
    wilson_interval,
)
from revisor.training.splits import split_pools
from tests.conftest import shared_path
from tests.fakes import FakeEngine, char_steps
from tests.test_cli import assert_one_line_error, revisor


def test_only_tokens_that_begin_inside_the_answer_count():
    tokens = [("x = ", -0.1), ("1", -0.2), ("\n", -0.3), ("```", -0.01), ("<|im_end|>", 0.0)]
    assert logprobs_within("x = 1\n", tokens) == (-0.1, -0.2, -0.3)
    assert logprobs_within("x = 1\n", tokens[:3]) == (-0.1, -0.2, -0.3)  # an engine without the stop


def test_features_measure_certainty_length_and_edit_size():
    mean, least, log_tokens, edit, agreement, grounded = features(
        [-0.1, -0.5, -0.3], "a\nb\nc\nd\n", "a\nB\nc\nd\n", 0.75, comment="b should be B")
    assert (mean, least, log_tokens) == (pytest.approx(-0.3), -0.5, pytest.approx(math.log(3)))
    assert edit == pytest.approx(0.25) and agreement == 0.75 and grounded == 1.0
    assert features([-0.1], "a\n", "a\n")[3] == 0.0
    assert uncalibrated_confidence((math.log(0.5), 0, 0, 0)) == pytest.approx(0.5)


def test_grounding_is_the_share_of_the_changed_words_the_comment_names():
    original = "def start(addr):\n    listner = listen(addr)\n    return listner\n"
    renamed = original.replace("listner", "listener")
    # Both the removed and the added word are named: the reviewer spelled the change out.
    assert grounding("typo: listner -> listener", original, renamed) == 1.0
    # Only the new name is named (two of the four changed words: listener twice, listner twice).
    assert grounding("call it listener", original, renamed) == 0.5
    assert grounding("this could be clearer", original, renamed) == 0.0
    assert grounding("", original, renamed) == 0.0  # an unprompted review names nothing
    # A revision that changes no word is measured on its symbols.
    assert grounding("add a semicolon", "x = 1\n", "x = 1;\n") == 0.0
    assert grounding("end it with `;`", "x = 1\n", "x = 1;\n") == 1.0
    assert grounding("anything", "x = 1\n", "x = 1\n") == 0.0  # nothing changed


def test_logistic_fit_is_calibrated_on_data_it_can_describe(tmp_path):
    rng = random.Random(0)
    rows, labels = [], []
    for _ in range(2000):
        mean = rng.uniform(-2, 0)
        truth = 1 / (1 + math.exp(-(3 * mean + 2)))
        rows.append((mean, mean - rng.random(), rng.uniform(1, 4), rng.random(), rng.random(), rng.random()))
        labels.append(rng.random() < truth)
    calibration = fit(rows, labels)
    confidences = [calibration.confidence(r) for r in rows]
    quality = reliability(confidences, labels, bins=5)
    assert quality["ece"] < 0.05
    means = [b["mean_confidence"] for b in quality["bins"]]
    assert means == sorted(means)
    sure, unsure = (0.0, -0.1, 2, 0.1, 0.5, 0.5), (-2.0, -2.5, 2, 0.1, 0.5, 0.5)
    assert calibration.confidence(sure) > calibration.confidence(unsure)
    calibration.save(tmp_path / "c.json")
    assert Calibration.load(tmp_path / "c.json").confidence(rows[0]) == pytest.approx(confidences[0])
    (tmp_path / "old.json").write_text(json.dumps({"features": ["mean_logprob"], "weights": [1]}))
    with pytest.raises(RevisorError, match="other features"):
        Calibration.load(tmp_path / "old.json")


def test_more_held_out_records_fit_the_confidence_but_the_threshold_is_placed_on_dev():
    rng = random.Random(3)

    def records(n: int, length: float) -> tuple[list, list]:
        rows, labels = [], []
        for _ in range(n):
            mean = rng.uniform(-1.5, 0)
            rows.append((mean, mean - rng.random(), length, rng.random(), math.nan, rng.random()))
            labels.append(rng.random() < 1 / (1 + math.exp(-(4 * mean + 1))))
        return rows, labels

    dev, dev_right = records(200, 2.0)
    more, more_right = records(600, 5.0)  # another mix: longer answers only
    about = {"dataset": "dev.jsonl", "model": "m", "strategy": "s"}
    alone, dev_confidences, _ = calibrate(dev, dev_right, 0.5, about)
    both, confidences, quality = calibrate(dev, dev_right, 0.5, about, more, more_right)
    assert both.figures["fitted_on"] == 800 and both.figures["records"] == 200
    assert sum(b["n"] for b in quality["bins"]) == 800  # reliability over every record fitted on
    assert len(confidences) == 200 and both.threshold in confidences  # placed on dev records
    assert both.weights != alone.weights
    assert both.figures["coverage"] == pytest.approx(sum(c >= both.threshold for c in confidences) / 200)


def test_the_curve_ends_at_full_coverage_exact_match_and_falls_past_wrong_answers():
    confidences = [0.9, 0.8, 0.8, 0.5, None, 0.2, None]
    correct = [True, False, True, True, False, False, True]
    curve = coverage_curve(confidences, correct)
    assert [p["threshold"] for p in curve] == [0.9, 0.8, 0.5, 0.2, 0.0]
    assert curve[-1]["coverage"] == 1.0 and curve[-1]["precision"] == pytest.approx(4 / 7)
    assert curve[0] == {"threshold": 0.9, "coverage": pytest.approx(1 / 7), "precision": 1.0}
    # Lowering the threshold past a wrong answer (0.2) never raises precision.
    assert curve[3]["precision"] < curve[2]["precision"]
    posted = at_threshold(confidences, correct, 0.5)
    assert posted | {"precision_interval": None} == {
        "threshold": 0.5, "coverage": pytest.approx(4 / 7), "precision": 0.75, "posted": 4, "exact": 3,
        "precision_interval": None}
    low, high = posted["precision_interval"]
    assert low < 0.75 < high and high - low > 0.5  # three of four says little
    assert at_threshold(confidences, correct, 0.0)["coverage"] == pytest.approx(5 / 7)  # revisions only
    assert threshold_for(curve, 0.75)["threshold"] == 0.5
    assert threshold_for(curve, 1.01) is None
    assert precision_at_coverage(confidences, correct, 1 / 7) == 1.0
    assert precision_at_coverage(confidences, correct, 1.0) == pytest.approx(4 / 7)


def test_the_precision_interval_is_wilsons_and_narrows_with_more_suggestions():
    # Reference values: the Wilson score interval at 95% (Newcombe 1998, table I; Brown, Cai and
    # DasGupta 2001).
    assert wilson_interval(5, 10) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))
    assert wilson_interval(0, 10) == (0.0, pytest.approx(0.2775, abs=1e-4))
    assert wilson_interval(10, 10) == (pytest.approx(0.7225, abs=1e-4), 1.0)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    small, large = wilson_interval(13, 43), wilson_interval(130, 430)
    assert small[1] - small[0] > 2.5 * (large[1] - large[0])


def test_calibrate_and_training_refuse_the_benchmark_under_any_name(tmp_path):
    benchmark = shared_path("datasets/codereviewer/test.jsonl")
    result = revisor("calibrate", "--dataset", str(benchmark), "--output", str(tmp_path / "c.json"))
    assert_one_line_error(result, "is the CodeReviewer benchmark")
    renamed = tmp_path / "dev.jsonl"
    shutil.copy(benchmark, renamed)
    result = revisor("calibrate", "--dataset", str(renamed), "--output", str(tmp_path / "c.json"))
    assert_one_line_error(result, "is the CodeReviewer benchmark")
    assert_one_line_error(revisor("train", "--data", str(renamed), "--output", str(tmp_path / "a")),
                          "not for training")
    missing = revisor("calibrate", "--dataset", str(tmp_path / "nope.jsonl"), "--output", str(tmp_path / "c"))
    assert_one_line_error(missing, "nope.jsonl not found")
    unknown = revisor("calibrate", "--dataset", str(renamed), "--features", "mean_logprob,colour")
    assert unknown.returncode == 2 and "colour (the features are mean_logprob, " in unknown.stderr.decode()
    with pytest.raises(RevisorError, match="benchmark"):
        split_pools([str(renamed)], str(tmp_path / "split"), 10, 13)


def test_split_drops_pairs_that_share_code_with_the_benchmark(tmp_path):
    benchmark = shared_path("datasets/codereviewer/test.jsonl")
    first = json.loads(benchmark.read_text().splitlines()[0])
    pool = tmp_path / "pool.jsonl"
    rows = [{"old": first["old"], "new": " other", "review": "a different comment"}]
    rows += [{"old": f" x = {i}", "new": f" y = {i}", "review": "rename"} for i in range(20)]
    rows.append(rows[1])
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = split_pools([str(pool)], str(tmp_path / "split"), 5, 13, exclude=[str(benchmark)])
    assert (summary["overlap_with_excluded_dropped"], summary["duplicates_dropped"]) == (1, 1)
    assert (summary["train"], summary["dev"]) == (15, 5)


def test_calibrate_fits_on_dev_answers_and_chooses_the_threshold_for_the_target(tmp_path):
    """A scripted model, surer of its exact answers than of its wrong ones (with some overlap)."""
    dev = tmp_path / "dev.jsonl"
    rows = [{"old": f" total = {i}", "new": f" total = {i} + 1", "review": "add one"} for i in range(120)]
    dev.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rng = random.Random(1)
    right = {i for i in range(120) if rng.random() < 0.25}

    class Scripted(FakeEngine):
        def generate(self, requests):
            completions = super().generate(requests)
            out = []
            for c in completions:
                i = int(c.text.split("=")[1].split()[0])
                sure = rng.uniform(-0.6, 0.0) if i in right else rng.uniform(-1.2, -0.4)
                out.append(replace(c, steps=char_steps(c.text, sure)))
            return out

    def answer(code: str) -> str:
        return code.rstrip("\n") + (" + 1\n" if int(code.split("=")[1]) in right else " - 1\n")

    engine = Scripted(answer)
    output, kept = tmp_path / "calibration.json", tmp_path / "answers"
    report = run_calibration(lambda: Reviser(engine, ZeroShot(), min_confidence=0.9), str(dev), 0.6, output,
                             answers=kept)
    calibration = Calibration.load(output)
    f = calibration.figures
    assert f["records"] == 120 and f["revised"] == 120 and f["exact_match"] == pytest.approx(len(right) / 120)
    assert f["reached"] and f["precision"] >= 0.6 and 0 < f["coverage"] < len(right) / 120 + 0.1
    assert 0 < calibration.threshold < 1 and f["ece"] < 0.15
    assert "| 100% |" in report and f"Threshold {calibration.threshold:.3f}" in report
    assert f["posted"] == round(f["coverage"] * 120) and f["exact"] == round(f["precision"] * f["posted"])
    low, high = f["precision_interval"]
    assert f"({f['exact']} of {f['posted']} exact)" in report
    assert f"between {low:.0%} and {high:.0%}" in report
    assert engine.closed

    def no_model():
        raise AssertionError("the kept answers should have been used")

    # Another target from the kept answers: the same fit, a lower threshold, no model run.
    run_calibration(no_model, str(dev), 0.3, tmp_path / "c30.json", answers=kept)
    again = Calibration.load(tmp_path / "c30.json")
    assert (again.weights, again.uses) == (calibration.weights, calibration.uses)
    assert again.threshold < calibration.threshold and again.figures["coverage"] > f["coverage"]
    assert "fake (zero-shot)" in report
    # Fewer candidate features, from the same kept answers: what one of them adds, measured.
    alone = run_calibration(no_model, str(dev), 0.3, tmp_path / "c1.json", answers=kept,
                            candidates=("edit_size",))
    assert Calibration.load(tmp_path / "c1.json").uses == ("edit_size",)
    assert "of edit_size: edit_size." in alone
    with pytest.raises(RevisorError, match="other model settings"):  # another model's answers
        run_calibration(no_model, str(dev), 0.3, tmp_path / "c.json", answers=kept, asked={"model": "other"})
    (stale,) = kept.iterdir()
    answers = json.loads(stale.read_text())
    answers["answers"][0]["id"] = "another record"
    stale.write_text(json.dumps(answers))
    with pytest.raises(RevisorError, match="other records"):
        run_calibration(no_model, str(dev), 0.3, tmp_path / "c.json", answers=kept)
    with pytest.raises(RevisorError, match="exactly"):
        never = FakeEngine(lambda code: code.rstrip("\n") + " - 1\n")
        run_calibration(lambda: Reviser(never, ZeroShot()), str(dev), 0.3, tmp_path / "c2.json")


def test_a_value_that_is_not_a_number_is_never_suggested_nor_fitted_on(tmp_path):
    rng = random.Random(5)
    rows, labels = [], []
    for _ in range(300):
        mean = rng.uniform(-1.5, 0)
        rows.append((mean, mean - rng.random(), 2.0, rng.random(), math.nan, rng.random()))
        labels.append(rng.random() < 1 / (1 + math.exp(-(4 * mean + 1))))
    rows[0] = (-math.inf, -math.inf, 2.0, 0.5, math.nan, 0.5)  # one token the engine gave -inf
    about = {"dataset": "dev.jsonl", "model": "m", "strategy": "s"}
    calibration, confidences, _ = calibrate(rows, labels, 0.5, about)
    assert all(math.isfinite(w) for w in calibration.weights) and calibration.figures["fitted_on"] == 299
    assert confidences[0] == 0.0 and calibration.confidence((0.0, 0.0, 2.0, 0.1, math.nan, 0.5)) > 0
    with pytest.raises(RevisorError, match="not numbers"):
        fit(rows, labels, ("mean_logprob",))
    broken = Calibration((math.nan,), 0.0, (0.0,), (1.0,), ("mean_logprob",))
    assert broken.confidence((0.0, 0.0, 2.0, 0.1, math.nan, 0.5)) == 0.0  # not 1.0, which would post all
    with pytest.raises(RevisorError, match="not numbers"):
        broken.save(tmp_path / "c.json")
    assert not (tmp_path / "c.json").exists()
