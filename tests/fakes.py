"""A scripted engine for fast tests of the pipeline's logic (real engines are tested too)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from revisor.model.engines.base import ChatRequest, Completion, Step


class FakeEngine:
    """Answers each request with `answer(code_under_review)`, every character a token of
    log-probability `logprob`; records every request."""

    description = "fake"

    def __init__(self, answer: Callable[[str], str], logprob: float = 0.0):
        self.answer = answer
        self.logprob = logprob
        self.requests: list[ChatRequest] = []
        self.closed = False

    def generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        self.requests.extend(requests)
        out = []
        for request in requests:
            query = request.messages[-2]["content"]
            block = query.split("Code under review:\n", 1)[1]
            code = block.split("\n", 1)[1].split("\n```", 1)[0] + "\n"
            text = self.answer(code)
            out.append(Completion(text, len(query), len(text), char_steps(text, self.logprob)))
        return out

    def close(self) -> None:
        self.closed = True


def char_steps(text: str, logprob: float) -> tuple[Step, ...]:
    """Every character of `text` a token of log-probability `logprob`."""
    return tuple(Step(char, logprob) for char in text)
