"""Several answers per comment (`--samples`): the code most of them give is the answer, and how
many agree is a feature of its confidence."""

import json
import math
import random

import pytest

from revisor.model.compose import build_reviser
from revisor.model.confidence import FEATURES, Calibration, features
from revisor.model.engines.base import ChatRequest, Completion
from revisor.model.errors import RevisorError
from revisor.model.prompts import ZeroShot
from revisor.model.reviser import SAMPLE_TEMPERATURE, Reviser
from revisor.model.schema import Revision, RevisionTask
from revisor.model.settings import model_settings
from revisor.training.calibrate import calibrate
from tests.fakes import char_steps

TASK = RevisionTask("x = 0\nprint(x)\n", "rename x to count", "py")


class Sampler:
    """Answers greedy requests with the code `greedy` and a request sampled with seed s with
    `sampled[s - 1]`, every character a token of log-probability -0.1."""

    description = "sampler"

    def __init__(self, greedy: str, sampled: list[str]):
        self.greedy, self.sampled = greedy, sampled
        self.requests: list[ChatRequest] = []

    def generate(self, requests):
        self.requests.extend(requests)
        texts = [self.sampled[r.seed - 1] if r.temperature else self.greedy for r in requests]
        return [Completion(text, 40, len(text), char_steps(text, -0.1)) for text in texts]

    def close(self):
        pass


def test_the_code_most_answers_give_wins_and_its_share_is_its_agreement():
    count, total = "count = 0\nprint(count)\n", "total = 0\nprint(total)\n"
    engine = Sampler(total, [count, count, "count  =  0\nprint(count)\n"])  # spacing does not split votes
    answer = Reviser(engine, ZeroShot(), samples=4).revise([TASK])[0]
    assert isinstance(answer.outcome, Revision) and answer.outcome.code == count
    assert answer.agreement == 0.75 and answer.features[FEATURES.index("agreement")] == 0.75
    assert answer.sampled_tokens == len(total) + len(count) + len("count  =  0\nprint(count)\n")
    sampled = [r for r in engine.requests if r.temperature]
    assert [r.seed for r in sampled] == [1, 2, 3] and {r.temperature for r in sampled} == {SAMPLE_TEMPERATURE}
    assert all(r.alternatives == 0 for r in sampled)  # only the greedy answer needs them (departures)


def test_a_tie_goes_to_the_greedy_answer_and_unchanged_answers_give_no_code():
    count, total = "count = 0\nprint(count)\n", "total = 0\nprint(total)\n"
    tie = Reviser(Sampler(total, [count, total, count]), ZeroShot(), samples=4).revise([TASK])[0]
    assert tie.outcome.code == total and tie.agreement == 0.5
    alone = Reviser(Sampler(count, [TASK.code, TASK.code]), ZeroShot(), samples=3).revise([TASK])[0]
    assert alone.outcome.code == count and alone.agreement == pytest.approx(1 / 3)


def test_one_answer_asks_for_no_samples_and_has_no_agreement():
    engine = Sampler("count = 0\nprint(count)\n", [])
    answer = Reviser(engine, ZeroShot()).revise([TASK])[0]
    assert len(engine.requests) == 1 and answer.agreement is None
    assert math.isnan(answer.features[FEATURES.index("agreement")])
    assert math.isnan(features([-0.1], "a\n", "b\n")[FEATURES.index("agreement")])


def test_an_answers_grounding_is_measured_against_its_reviewers_comment():
    # "rename x to count": the rename is all named (x out, count in); another name, half of it.
    grounding = FEATURES.index("grounding")
    named = Reviser(Sampler("count = 0\nprint(count)\n", []), ZeroShot()).revise([TASK])[0]
    assert named.features[grounding] == 1.0
    other = Reviser(Sampler("total = 0\nprint(total)\n", []), ZeroShot()).revise([TASK])[0]
    assert other.features[grounding] == 0.5


def rows_with(agreement, rng: random.Random, n: int) -> tuple[list, list]:
    rows, labels = [], []
    for _ in range(n):
        mean, agree = rng.uniform(-1.5, 0), rng.choice([0.25, 0.5, 0.75, 1.0])
        rows.append((mean, mean - rng.random(), 2.0, rng.random(), agree if agreement else math.nan, 0.5))
        labels.append(rng.random() < 1 / (1 + math.exp(-(6 * agree - 5 + mean))))
    return rows, labels


def test_calibration_weighs_agreement_where_it_was_sampled_and_never_where_it_was_not():
    about = {"dataset": "dev.jsonl", "model": "m", "strategy": "s"}
    rows, labels = rows_with(True, random.Random(1), 400)
    sampled, _, _ = calibrate(rows, labels, 0.5, about | {"samples": 4})
    assert "agreement" in sampled.uses and sampled.samples == 4
    rows, labels = rows_with(False, random.Random(1), 400)
    greedy, _, _ = calibrate(rows, labels, 0.5, about | {"samples": 1})
    assert "agreement" not in greedy.uses and greedy.samples == 1


def test_samples_default_to_the_calibrations_and_a_calibration_of_agreement_needs_them(tmp_path):
    rows, labels = rows_with(True, random.Random(2), 300)
    fitted, _, _ = calibrate(rows, labels, 0.5, {"dataset": "d", "model": "m", "strategy": "s", "samples": 4})
    path = tmp_path / "calibration.json"
    fitted.save(path)
    assert Calibration.load(path).samples == 4 and json.loads(path.read_text())["figures"]["samples"] == 4
    engine = Sampler("count = 0\nprint(count)\n", ["count = 0\nprint(count)\n"] * 7)
    settings = {"model": "m", "engine": "openai", "base_url": "http://127.0.0.1:9/v1",
                "strategy": "zero-shot", "calibration": str(path)}
    assert build_reviser(model_settings(**settings), engine).samples == 4
    assert build_reviser(model_settings(**settings, samples=8), engine).samples == 8
    with pytest.raises(RevisorError, match="--samples / REVISOR_SAMPLES must be 2 or more"):
        build_reviser(model_settings(**settings, samples=1), engine)
    assert build_reviser(model_settings(**settings | {"calibration": None}), engine).samples == 1
