"""The real engines on the embedded model: in-process vLLM, `vllm serve` over HTTP, transformers."""

import pytest

from revisor.model.departure import continuation, joined, likeliest_departure
from revisor.model.engines.base import ChatRequest, EngineConfig
from revisor.model.engines.openai_http import OpenAIEngine
from revisor.model.errors import EngineUnavailableError
from revisor.model.parsing import same_code
from revisor.model.prompts import STOP, ZeroShot
from revisor.model.reviser import Reviser
from revisor.model.schema import Revision, RevisionTask
from tests.conftest import SERVED_NAME

pytestmark = pytest.mark.slow

TASKS = [
    RevisionTask("def read(path):\n    f = open(path)\n    data = f.read()\n    f.close()\n    return data\n",
                 "use a context manager here", "py"),
    RevisionTask("for (int i = 0; i < items.size(); i++) {\n    total += items.get(i);\n}\n",
                 "use an enhanced for loop", "java"),
    RevisionTask("if x == None:\n    return\n", "compare to None with `is`", "py"),
]


def requests():
    return [Reviser(None, ZeroShot()).request(task) for task in TASKS]  # type: ignore[arg-type]


def test_vllm_engine_answers_every_request_within_its_bounds(vllm_engine):
    completions = vllm_engine.generate(requests())
    assert len(completions) == len(TASKS)
    for request, completion in zip(requests(), completions, strict=True):
        assert 0 < completion.output_tokens <= request.max_tokens
        assert completion.prompt_tokens > 50
        assert STOP[0] not in completion.text


def test_context_manager_revision_from_the_embedded_model(vllm_engine):
    answer = Reviser(vllm_engine, ZeroShot()).revise(TASKS[:1])[0]
    assert isinstance(answer.outcome, Revision)
    assert "with open(path" in answer.outcome.code


def test_openai_engine_against_vllm_serve_matches_in_process_vllm(vllm_engine, vllm_server):
    # One request at a time on both sides: the same batch shapes, so the same bf16 arithmetic.
    served = OpenAIEngine(EngineConfig(model=SERVED_NAME, base_url=vllm_server, concurrency=1))
    remote = [served.generate([request])[0] for request in requests()]
    local = [vllm_engine.generate([request])[0] for request in requests()]
    assert [c.text for c in remote] == [c.text for c in local]
    assert [c.output_tokens for c in remote] == [c.output_tokens for c in local]
    assert [c.prompt_tokens for c in remote] == [c.prompt_tokens for c in local]


def test_openai_engine_finds_the_served_model_by_itself(vllm_server):
    engine = OpenAIEngine(EngineConfig(model="", base_url=vllm_server))
    assert engine.generate(requests()[:1])[0].output_tokens > 0
    assert engine.description == SERVED_NAME  # never the URL: it goes into comments on GitHub


def test_openai_engine_errors_name_the_fix(vllm_server):
    unknown = OpenAIEngine(EngineConfig(model="no-such-model", base_url=vllm_server, retries=0))
    with pytest.raises(EngineUnavailableError, match="does not serve 'no-such-model'"):
        unknown.generate(requests()[:1])
    closed = OpenAIEngine(EngineConfig(model="m", base_url="http://127.0.0.1:9/v1", retries=0, timeout_s=2))
    with pytest.raises(EngineUnavailableError, match="cannot reach the model server"):
        closed.generate(requests()[:1])


def test_transformers_engine_uses_the_same_prompts(embedded_model):
    from revisor.model.engines.hf import TransformersEngine

    engine = TransformersEngine(EngineConfig(model=embedded_model, batch_size=2))
    completions = engine.generate(requests())
    assert len(completions) == len(TASKS)
    for request, completion in zip(requests(), completions, strict=True):
        assert 0 < completion.output_tokens <= request.max_tokens
        assert STOP[0] not in completion.text
    answer = Reviser(engine, ZeroShot()).revise(TASKS[:1])[0]
    assert "with open(path" in answer.outcome.code


def test_openai_engine_spreads_over_replicas_and_skips_one_that_fails(vllm_server, monkeypatch):
    # However long a busy machine takes to answer the batch, the failure is still recent after it.
    monkeypatch.setattr("revisor.model.engines.openai_http.COOL_DOWN_S", 3600.0)
    refusing = "http://127.0.0.1:9/v1"
    engine = OpenAIEngine(EngineConfig(model=SERVED_NAME, base_url=f"{refusing},{vllm_server}", timeout_s=30))
    assert [engine._replica_order() for _ in range(3)] == [[0, 1], [1, 0], [0, 1]]  # turns
    batch = requests() * 3
    for _ in range(2):  # the second time, the refusing replica is tried last
        completions = engine.generate(batch)
        assert len(completions) == len(batch) and all(c.output_tokens > 0 for c in completions)
        assert [engine._replica_order() for _ in range(2)] == [[1, 0], [1, 0]]
    both_down = OpenAIEngine(EngineConfig(model="m", base_url=f"{refusing},http://127.0.0.1:7/v1"))
    with pytest.raises(EngineUnavailableError, match="127.0.0.1:9/v1: .*; http://127.0.0.1:7/v1: "):
        both_down.generate(requests()[:1])


CONFIDENCE_TOLERANCE = 0.05
"""How far the engines' confidences for one greedy answer may differ: vLLM computes in bf16
where the CPU has it, transformers in fp32 where it does not, so log-probabilities differ in
their last digits."""


def test_confidence_agrees_across_engines(vllm_engine, vllm_server, transformers_engine):
    served = OpenAIEngine(EngineConfig(model=SERVED_NAME, base_url=vllm_server, concurrency=1))
    engines = [vllm_engine, served, transformers_engine]
    more = [RevisionTask("x = 0\nfor item in items:\n    x += 1\n", "rename x to count", "py"),
            RevisionTask("def add(a, b):\n    return a+b\n", "add type hints for ints", "py"),
            RevisionTask("print 'hello'\n", "use the Python 3 print function", "py")]
    compared = []
    for task in TASKS + more:
        answers = [Reviser(engine, ZeroShot()).revise([task])[0] for engine in engines]
        # vLLM in process and behind `vllm serve` always give the same answer; transformers, with
        # other arithmetic, sometimes another one, which is then not compared.
        same = [a for a in answers if a.completion.text == answers[0].completion.text]
        assert len(same) >= 2
        if answers[0].confidence is None:
            continue
        compared.append(len(same))
        assert len({len(a.completion.token_logprobs) for a in same}) == 1
        assert all(a.completion.token_logprobs and max(a.completion.token_logprobs) <= 0 for a in same)
        confidences = [a.confidence for a in same]
        assert min(confidences) > 0, confidences
        assert max(confidences) - min(confidences) <= CONFIDENCE_TOLERANCE, confidences
    assert len(compared) >= 2 and 3 in compared  # transformers agreed on at least one answer


def test_every_engine_finds_the_same_departure_and_the_model_finishes_it(vllm_engine, vllm_server,
                                                                        transformers_engine):
    """The likeliest other tokens come the same from each engine (within the tolerance of their
    arithmetic), so each leaves the greedy answer at the same token; finished, that answer is
    another revision."""
    served = OpenAIEngine(EngineConfig(model=SERVED_NAME, base_url=vllm_server, concurrency=1))
    engines = [vllm_engine, served, transformers_engine]
    for request in requests():
        assert request.alternatives == 5
        firsts = [engine.generate([request])[0] for engine in engines]
        assert all(len(step.alternatives) == 5 for step in firsts[0].steps)
        departures = [likeliest_departure(first, request.stop) for first in firsts]
        assert firsts[1].text == firsts[0].text
        for other, tolerance in ((1, 1e-4), (2, CONFIDENCE_TOLERANCE)):  # vLLM served: same arithmetic
            if firsts[other].text == firsts[0].text:
                assert (departures[other].kept, departures[other].token) == (departures[0].kept,
                                                                             departures[0].token)
                assert departures[other].logprob == pytest.approx(departures[0].logprob, abs=tolerance)
        departure = departures[0]
        assert (firsts[0].text + STOP[0]).startswith(departure.prefix)
        rest = vllm_engine.generate([continuation(request, departure)])[0]
        second = joined(firsts[0], departure, rest)
        assert second.text.startswith(departure.prefix + departure.token)
        assert not same_code(second.text, firsts[0].text)
        assert len(second.token_logprobs) > departure.kept and max(second.token_logprobs) <= 0


def test_every_engine_samples_at_a_temperature_and_repeats_a_seed(vllm_engine, vllm_server,
                                                                 transformers_engine):
    from dataclasses import replace

    served = OpenAIEngine(EngineConfig(model=SERVED_NAME, base_url=vllm_server, concurrency=1))
    engines = [vllm_engine, served, transformers_engine]
    greedy = replace(requests()[0], max_tokens=24)
    sampled = [replace(greedy, temperature=1.0, seed=seed, alternatives=0) for seed in (1, 2)]
    for engine in engines:
        first, again = engine.generate(sampled), engine.generate(sampled)
        assert [c.text for c in first] == [c.text for c in again]  # a seed gives its answer again
        assert len({c.text for c in first}) >= 2, [c.text for c in first]  # and seeds differ
        assert all(c.token_logprobs and max(c.token_logprobs) <= 0 for c in first)
        assert all(0 < c.output_tokens <= greedy.max_tokens for c in first)


def test_sampled_prompts_longer_than_one_prefill_step_are_answered_in_process(vllm_engine):
    # vLLM on a CPU fails on a seeded request whose prompt it prefills in parts: Revisor has it
    # prefill prompts whole. Eight prompts of about 900 tokens are more than one step's 4096.
    code = "".join(f"value_{i} = compute(value_{i - 1}, {i})\n" for i in range(1, 90))
    messages = [{"role": "user", "content": f"Rename value to item:\n{code}"}]
    sampled = [ChatRequest(messages, 4, temperature=1.0, seed=seed) for seed in range(1, 9)]
    completions = vllm_engine.generate(sampled)
    assert all(c.prompt_tokens > 600 and 0 < c.output_tokens <= 4 for c in completions)


def test_the_in_process_engine_answers_threads_one_at_a_time(vllm_engine):
    # The bot's worker threads share one engine; vLLM's LLM is not safe to call from two at once.
    import threading

    expected = [c.text for c in vllm_engine.generate(requests())]
    answers: list[list[str]] = []
    def answer() -> None:
        answers.append([c.text for c in vllm_engine.generate(requests())])

    threads = [threading.Thread(target=answer) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [expected] * 3
