"""Departures: where the greedy answer changes nothing, the likeliest answer that does."""

import json
import math
import re

import pytest

from revisor.model.departure import continuation, joined, likeliest_departure
from revisor.model.engines.base import ChatRequest, Completion, Step
from revisor.model.prompts import STOP, ZeroShot
from revisor.model.reviser import Reviser
from revisor.model.schema import NoRevision, Revision, RevisionTask
from revisor.training.bench import BenchConfig, run_bench

TASK = RevisionTask("x = 0\nprint(x)\n", "rename x to count", "py")


def greedy(*steps: Step) -> Completion:
    return Completion("".join(s.token for s in steps if s.token != "```"), 10, len(steps), steps)


COPY = greedy(
    Step("x", -0.5, (("count", -1.0), ("X", -4.0))),
    Step(" = 0", -0.1, ((" =", -0.2), (" = 1", -3.0))),  # " =" only splits the answer differently
    Step("\n", -0.1, (("\n\n", -0.3),)),  # spacing only
    Step("print(x)", -0.1, (("<|im_end|>", -0.05), ("print(count)", -2.0))),  # the end of the turn
    Step("\n", -0.1),
    Step("```", -0.01, (("``` ", -0.5), ("pass", -0.9))),  # a stop string; then a line added
)


def test_the_likeliest_path_off_the_greedy_answer_is_taken():
    departure = likeliest_departure(COPY, STOP)
    assert (departure.kept, departure.prefix, departure.token) == (0, "", "count")
    # Without that token, the likeliest is a line added at the end (-0.9 - 0.9), before
    # "print(count)" (-0.7 - 2.0) and " = 1" (-0.5 - 3.0).
    steps = (Step("x", -0.5, (("X", -4.0),)), *COPY.steps[1:])
    later = likeliest_departure(greedy(*steps), STOP)
    assert (later.kept, later.prefix, later.token) == (5, "x = 0\nprint(x)\n", "pass")


def test_the_departure_is_the_one_a_search_of_every_path_finds_on_long_random_answers():
    """Linear in the answer's length, and the same choice as weighing every full path anew."""
    import random

    from revisor.model.departure import END_OF_TURN, truncate_at_stop

    def searched(completion: Completion, stop) -> tuple | None:
        answer = "".join((completion.text + stop[0]).split())
        found = []
        for kept in range(len(completion.steps)):
            prefix = "".join(step.token for step in completion.steps[:kept])
            path = sum(step.logprob for step in completion.steps[:kept])
            for token, logprob in completion.steps[kept].alternatives:
                text = prefix + token
                if (token and not END_OF_TURN.fullmatch(token) and truncate_at_stop(text, stop) == text
                        and not answer.startswith("".join(text.split()))):
                    found.append((path + logprob, -kept, kept, token))
        return max(found)[2:] if found else None

    rng = random.Random(7)
    pieces = ["x", " = ", "0", "\n", "print(", ")", " ", "`", "``", "count", "<|im_end|>", "\n\n", "y"]
    for _ in range(200):
        steps = tuple(Step(rng.choice(pieces), -rng.random(),
                           tuple((rng.choice(pieces), -3 * rng.random()) for _ in range(rng.randint(0, 3))))
                      for _ in range(rng.randint(1, 30)))
        completion = greedy(*steps)
        found = likeliest_departure(completion, STOP)
        assert (None if found is None else (found.kept, found.token)) == searched(completion, STOP)


def test_no_departure_without_alternatives_or_when_all_lead_back():
    assert likeliest_departure(greedy(Step("x = 0", -0.1), Step("\n", 0.0)), STOP) is None
    back = greedy(Step("x = 0", -0.1, ((" x", -0.2), ("x =", -0.5))), Step("\n", 0.0))
    assert likeliest_departure(back, STOP) is None


def test_the_second_answer_continues_the_first_and_keeps_every_token_logprob():
    request = Reviser(None, ZeroShot()).request(TASK)  # type: ignore[arg-type]
    departure = likeliest_departure(COPY, STOP)
    follow = continuation(request, departure)
    assert follow.messages[:-1] == request.messages[:-1]
    assert follow.messages[-1] == {"role": "assistant", "content": "```python\ncount"}
    assert follow.continues_final_message and follow.stop == STOP
    assert follow.max_tokens == request.max_tokens - 1
    rest = Completion(" = 0\nprint(count)\n", 40, 3,
                      (Step(" = 0", -0.2), Step("\nprint(count)\n", -0.3), Step("```", 0.0)))
    answer = joined(COPY, departure, rest)
    assert answer.text == "count = 0\nprint(count)\n"
    assert answer.token_logprobs == (-1.0, -0.2, -0.3)
    assert (answer.prompt_tokens, answer.output_tokens) == (50, 9)


class Copier:
    """A model that copies the code and reports `COPY`'s alternatives, then finishes whatever
    answer it is given to continue by renaming x."""

    description = "copier"

    def __init__(self):
        self.requests: list[ChatRequest] = []

    def generate(self, requests):
        self.requests += requests
        out = []
        for request in requests:
            if re.fullmatch(r"`{3,}\w*\n", request.messages[-1]["content"]):  # the opening fence
                out.append(COPY)
            else:
                out.append(Completion(" = 0\nprint(count)\n", 40, 3, (Step(" = 0\nprint(count)\n", -0.1),)))
        return out

    def close(self):
        pass


def test_a_reviser_answers_an_unchanged_copy_with_its_departure():
    engine = Copier()
    answer = Reviser(engine, ZeroShot()).revise([TASK])[0]
    assert isinstance(answer.outcome, Revision) and answer.outcome.code == "count = 0\nprint(count)\n"
    assert [r.alternatives for r in engine.requests] == [5, 0]
    assert answer.features[0] == pytest.approx((-1.0 - 0.1) / 2)
    assert 0 < answer.confidence < math.exp(-0.5)

    engine = Copier()
    plain = Reviser(engine, ZeroShot(), departures=False).revise([TASK])[0]
    assert isinstance(plain.outcome, NoRevision) and len(engine.requests) == 1
    assert engine.requests[0].alternatives == 0


@pytest.mark.parametrize("departures", [True, False])
def test_bench_measures_with_and_without_departures(tmp_path, departures):
    dataset = tmp_path / "pairs.jsonl"
    dataset.write_text(json.dumps({"old": " x = 0\n print(x)", "new": " count = 0\n print(count)",
                                   "review": "rename x to count", "lang": "py"}) + "\n")
    config = BenchConfig(dataset=str(dataset), strategies=["zero-shot"], engines=["vllm"],
                         output=str(tmp_path / "bench"), departures=departures)
    run_bench(config, lambda model, engine, strategy: Reviser(Copier(), ZeroShot()))
    [mine] = [s for s in json.loads((tmp_path / "bench" / "metrics.json").read_text())["systems"]]
    assert (mine["exact_match"], mine["unchanged"]) == ((1.0, 0.0) if departures else (0.0, 1.0))
