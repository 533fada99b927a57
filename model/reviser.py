"""Code + comment in, revised code out: a prompt strategy and an engine, put together."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from model.engines.base import ChatRequest, Completion, Engine
from model.parsing import parse_revision, revised_code
from model.prompts import STOP, PromptStrategy, max_new_tokens
from model.schema import RevisionOutcome, RevisionTask

UNBOUNDED_MAX_TOKENS = 1024


@dataclass(frozen=True)
class Answer:
    task: RevisionTask
    completion: Completion
    answer_text: str  # the whole assistant message, prefilled fence included

    @property
    def code(self) -> str:
        """The revised code as the model wrote it ("" when it wrote none)."""
        return revised_code(self.answer_text, self.task.code, self.task.before, self.task.after)

    @property
    def outcome(self) -> RevisionOutcome:
        return parse_revision(self.answer_text, self.task.code, self.task.before, self.task.after)


@dataclass
class Reviser:
    engine: Engine
    strategy: PromptStrategy
    bounded: bool = True
    """Stop at the closing fence and cap new tokens by input length; off only to measure it."""

    def request(self, task: RevisionTask) -> ChatRequest:
        messages = self.strategy.render(task)
        if self.bounded:
            return ChatRequest(messages, max_new_tokens(task.code), STOP)
        return ChatRequest(messages, UNBOUNDED_MAX_TOKENS)

    def revise(self, tasks: Sequence[RevisionTask]) -> list[Answer]:
        requests = [self.request(task) for task in tasks]
        completions = self.engine.generate(requests)
        return [
            Answer(task, completion, _prefill(request) + completion.text)
            for task, request, completion in zip(tasks, requests, completions, strict=True)
        ]


def _prefill(request: ChatRequest) -> str:
    return request.messages[-1]["content"] if request.continues_final_message else ""
