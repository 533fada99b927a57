"""Code + comment in, revised code out: a prompt strategy and an engine, put together."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property

from revisor.model.confidence import Calibration, features, uncalibrated_confidence
from revisor.model.departure import ALTERNATIVES, continuation, joined, likeliest_departure
from revisor.model.engines.base import ChatRequest, Completion, Engine
from revisor.model.parsing import OutsideTheLines, parse_revision, revised_code
from revisor.model.prompts import STOP, PromptStrategy, max_new_tokens
from revisor.model.schema import LowConfidence, Revision, RevisionOutcome, RevisionTask

UNBOUNDED_MAX_TOKENS = 1024


@dataclass(frozen=True)
class Answer:
    task: RevisionTask
    completion: Completion
    answer_text: str  # the whole assistant message, prefilled fence included
    calibration: Calibration | None = None
    min_confidence: float = 0.0
    hunk: int = 0
    """Lines around the code the prompt showed as part of it (`PromptStrategy.hunk_context`)."""

    @property
    def code(self) -> str:
        """The revised code as the model wrote it, unchanged or not ("" when it wrote none, or
        changed lines around the code)."""
        try:
            task = self.task
            return revised_code(self.answer_text, task.code, task.before, task.after, self.hunk)
        except OutsideTheLines:
            return ""

    @cached_property
    def parsed(self) -> RevisionOutcome:
        return parse_revision(self.answer_text, self.task.code, self.task.before, self.task.after, self.hunk)

    @cached_property
    def features(self) -> tuple[float, ...] | None:
        """What the confidence is computed from (`model.confidence.FEATURES`); None when the
        answer changes nothing."""
        parsed = self.parsed
        if not isinstance(parsed, Revision):
            return None
        return features(self.completion.token_logprobs, self.task.code, parsed.code)

    @property
    def confidence(self) -> float | None:
        """The probability that the revision is right; None when the answer changes nothing."""
        if self.features is None:
            return None
        if self.calibration is None:
            return uncalibrated_confidence(self.features)
        return self.calibration.confidence(self.features)

    @property
    def outcome(self) -> RevisionOutcome:
        """The revision, if there is one and its confidence reaches `min_confidence`."""
        parsed = self.parsed
        if not isinstance(parsed, Revision):
            return parsed
        confidence = self.confidence or 0.0
        if confidence < self.min_confidence:
            return LowConfidence(f"no confident suggestion (confidence {confidence:.2f}, below the "
                                 f"threshold {self.min_confidence:.2f})", parsed.code, confidence,
                                 self.min_confidence)
        return replace(parsed, confidence=confidence)


@dataclass
class Reviser:
    engine: Engine
    strategy: PromptStrategy
    bounded: bool = True
    """Stop at the closing fence and cap new tokens by input length; off only to measure it."""
    calibration: Calibration | None = None
    """Maps an answer's token log-probabilities to a calibrated confidence."""
    min_confidence: float = 0.0
    """Revisions less sure than this are not suggested (`LowConfidence`)."""
    departures: bool = True
    """Where the greedy answer changes nothing, answer with the likeliest one that does
    (`model.departure`)."""

    def request(self, task: RevisionTask) -> ChatRequest:
        messages = self.strategy.render(task)
        alternatives = ALTERNATIVES if self.departures else 0
        if self.bounded:
            return ChatRequest(messages, max_new_tokens(task.code), STOP, alternatives)
        return ChatRequest(messages, UNBOUNDED_MAX_TOKENS, alternatives=alternatives)

    def revise(self, tasks: Sequence[RevisionTask], min_confidence: float | None = None) -> list[Answer]:
        """Answers for `tasks`; `min_confidence` overrides the reviser's threshold for these."""
        requests = [self.request(task) for task in tasks]
        completions = self.engine.generate(requests)
        if self.departures:
            completions = self._depart_where_unchanged(tasks, requests, completions)
        threshold = self.min_confidence if min_confidence is None else min_confidence
        return [
            Answer(task, completion, _prefill(request) + completion.text, self.calibration, threshold,
                   self.strategy.hunk_context)
            for task, request, completion in zip(tasks, requests, completions, strict=True)
        ]

    def _depart_where_unchanged(self, tasks: Sequence[RevisionTask], requests: Sequence[ChatRequest],
                                completions: list[Completion]) -> list[Completion]:
        """Each completion that revises nothing replaced by its likeliest departure, finished."""
        departures = {}
        for i, (task, request, completion) in enumerate(zip(tasks, requests, completions, strict=True)):
            answer = _prefill(request) + completion.text
            parsed = parse_revision(answer, task.code, task.before, task.after, self.strategy.hunk_context)
            if isinstance(parsed, Revision):
                continue
            if (departure := likeliest_departure(completion, request.stop)) is not None:
                departures[i] = departure
        if not departures:
            return completions
        rests = self.engine.generate([continuation(requests[i], d) for i, d in departures.items()])
        completions = list(completions)
        for (i, departure), rest in zip(departures.items(), rests, strict=True):
            completions[i] = joined(completions[i], departure, rest)
        return completions


def _prefill(request: ChatRequest) -> str:
    return request.messages[-1]["content"] if request.continues_final_message else ""
