"""Code + comment in, revised code out: a prompt strategy and an engine, put together."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property

from revisor.model.confidence import Calibration, features, uncalibrated_confidence
from revisor.model.departure import ALTERNATIVES, continuation, joined, likeliest_departure
from revisor.model.engines.base import ChatRequest, Completion, Engine
from revisor.model.parsing import OutsideTheLines, parse_revision, revised_code
from revisor.model.prompts import STOP, PromptStrategy, max_new_tokens
from revisor.model.schema import BrokenSyntax, LowConfidence, Revision, RevisionOutcome, RevisionTask
from revisor.model.syntax import added_parse_errors

UNBOUNDED_MAX_TOKENS = 1024
SAMPLE_TEMPERATURE = 0.8
"""The temperature of the answers sampled beside the greedy one (`Reviser.samples`)."""


@dataclass(frozen=True)
class Answer:
    task: RevisionTask
    completion: Completion
    answer_text: str  # the whole assistant message, prefilled fence included
    calibration: Calibration | None = None
    min_confidence: float = 0.0
    hunk: int = 0
    """Lines around the code the prompt showed as part of it (`PromptStrategy.hunk_context`)."""
    agreement: float | None = None
    """The fraction of the answers asked for that give this code (None: only one was asked for)."""
    sampled_tokens: int = 0
    """Output tokens generated for the other answers it was chosen from."""

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
        """The revision, or why there is none: nothing usable, or a revision that breaks the syntax."""
        task = self.task
        parsed = parse_revision(self.answer_text, task.code, task.before, task.after, self.hunk)
        if not isinstance(parsed, Revision):
            return parsed
        if added := added_parse_errors(task.code, parsed.code, task.language):
            return BrokenSyntax(f"the revision adds {added} syntax error(s) the original did not have",
                                parsed.code)
        return parsed

    @cached_property
    def features(self) -> tuple[float, ...] | None:
        """What the confidence is computed from (`model.confidence.FEATURES`); None when the
        answer suggests nothing (it changes nothing, or breaks the syntax)."""
        parsed = self.parsed
        if not isinstance(parsed, Revision):
            return None
        agreement = math.nan if self.agreement is None else self.agreement
        return features(self.completion.token_logprobs, self.task.code, parsed.code, agreement,
                        self.task.comment)

    @property
    def confidence(self) -> float | None:
        """The probability that the revision is right; None when the answer suggests nothing."""
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
    samples: int = 1
    """Answers per request: the greedy one and `samples - 1` sampled ones; the code most of them
    give is the answer (`by_agreement`)."""

    def request(self, task: RevisionTask) -> ChatRequest:
        messages = self.strategy.render(task)
        alternatives = ALTERNATIVES if self.departures else 0
        if self.bounded:
            return ChatRequest(messages, max_new_tokens(task.code), STOP, alternatives)
        return ChatRequest(messages, UNBOUNDED_MAX_TOKENS, alternatives=alternatives)

    def revise(self, tasks: Sequence[RevisionTask], min_confidence: float | None = None) -> list[Answer]:
        """Answers for `tasks`; `min_confidence` overrides the reviser's threshold for these."""
        requests = [self.request(task) for task in tasks]
        extra = self.samples - 1
        sampled = [replace(request, temperature=SAMPLE_TEMPERATURE, seed=seed, alternatives=0)
                   for request in requests for seed in range(1, extra + 1)]
        completions = self.engine.generate([*requests, *sampled])
        greedy, samples = completions[: len(requests)], completions[len(requests) :]
        if self.departures:
            greedy = self._depart_where_unchanged(tasks, requests, greedy)
        threshold = self.min_confidence if min_confidence is None else min_confidence

        def answer(task: RevisionTask, request: ChatRequest, completion: Completion) -> Answer:
            return Answer(task, completion, _prefill(request) + completion.text, self.calibration, threshold,
                          self.strategy.hunk_context)

        answers = []
        for i, (task, request) in enumerate(zip(tasks, requests, strict=True)):
            first = answer(task, request, greedy[i])
            if extra:
                others = [answer(task, request, c) for c in samples[i * extra : (i + 1) * extra]]
                first = by_agreement([first, *others])
            answers.append(first)
        return answers

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


def by_agreement(answers: Sequence[Answer]) -> Answer:
    """The answer whose revised code most of `answers` give (the first, greedy one on a tie, then
    the likeliest), with the fraction of them that give it. Answers that change nothing give none."""
    def code(answer: Answer) -> str | None:
        parsed = answer.parsed
        return " ".join(parsed.code.split()) if isinstance(parsed, Revision) else None

    votes = Counter(c for a in answers if (c := code(a)) is not None)
    first = answers[0]

    def rank(answer: Answer) -> tuple[int, bool, float]:
        logprobs = answer.completion.token_logprobs or (-math.inf,)
        return votes.get(code(answer), 0), answer is first, sum(logprobs) / len(logprobs)

    chosen = max(answers, key=rank)
    others = sum(a.completion.output_tokens for a in answers) - chosen.completion.output_tokens
    return replace(chosen, agreement=votes.get(code(chosen), 0) / len(answers), sampled_tokens=others)


def _prefill(request: ChatRequest) -> str:
    return request.messages[-1]["content"] if request.continues_final_message else ""
