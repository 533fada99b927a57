"""A second answer where the greedy one changes nothing.

A small model tuned on review-to-revision pairs copies the code it is shown token by token, and
greedy decoding can copy straight past the place the comment asks to change: two of three greedy
answers of the embedded default leave the code as it was. Where that happens, Revisor takes the
likeliest path that leaves the greedy answer at one token — the answer's tokens up to some step,
then one of the likeliest other tokens there — and lets the model finish greedily from it. That
answer's confidence, computed from all of its tokens (the forced one too), decides like any
other's whether it is suggested. docs/training.md has what this does to Exact Match.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from revisor.model.engines.base import ChatRequest, Completion, Step, truncate_at_stop

ALTERNATIVES = 5
"""How many of the likeliest other tokens are weighed at each step."""

END_OF_TURN = re.compile(r"<\|[^|\s]+\|>|</s>|<eos>|<end_of_turn>")
"""How chat models' special tokens read ("<|im_end|>", "<|eot_id|>", "</s>"): engines report
their text, and no engine says which tokens are special (a served model's tokenizer is not here)."""


@dataclass(frozen=True)
class Departure:
    kept: int
    """Steps of the greedy answer kept before the other token."""
    prefix: str
    """Their text."""
    token: str
    logprob: float


def likeliest_departure(completion: Completion, stop: Sequence[str]) -> Departure | None:
    """The departure whose path (kept steps and the other token) is likeliest.

    Other tokens that only split or space the greedy answer differently lead back to it and do
    not count, nor do ones that end the answer (a stop string, the end of the turn). None where
    the engine reported no alternatives. Linear in the answer's length: what is known of the
    kept steps (where they are in the squashed answer, whether a stop string is in them) is
    carried from step to step, not computed again for every other token.
    """
    answer = _squashed(completion.text + (stop[0] if stop else ""))
    reach = max((len(s) for s in stop), default=1) - 1  # how far back a stop string can start
    best: tuple[float, Departure] | None = None
    prefix, path = "", 0.0
    squashed, on_answer, stopped = 0, True, False  # the kept steps: squashed length, still the answer?
    for kept, step in enumerate(completion.steps):
        tail = prefix[max(0, len(prefix) - reach) :] if reach else ""
        for token, logprob in step.alternatives:
            if not token or END_OF_TURN.fullmatch(token) or stopped or _holds_stop(tail + token, stop):
                continue
            if on_answer and answer.startswith(_squashed(token), squashed):
                continue
            if best is None or path + logprob > best[0]:
                best = (path + logprob, Departure(kept, prefix, token, logprob))
        stopped = stopped or _holds_stop(tail + step.token, stop)
        on_answer = on_answer and answer.startswith(_squashed(step.token), squashed)
        squashed += len(_squashed(step.token))
        prefix += step.token
        path += step.logprob
    return best[1] if best else None


def _holds_stop(text: str, stop: Sequence[str]) -> bool:
    return truncate_at_stop(text, stop) != text


def continuation(request: ChatRequest, departure: Departure) -> ChatRequest:
    """The request that finishes, greedily, an answer that begins with the departure."""
    head, prefill = request.messages, ""
    if request.continues_final_message:
        head, prefill = request.messages[:-1], request.messages[-1]["content"]
    answer = {"role": "assistant", "content": prefill + departure.prefix + departure.token}
    return ChatRequest([*head, answer], max(1, request.max_tokens - departure.kept - 1), request.stop)


def joined(first: Completion, departure: Departure, rest: Completion) -> Completion:
    """The whole second answer: the kept steps, the other token, and the rest."""
    steps = first.steps[: departure.kept] + (Step(departure.token, departure.logprob),) + rest.steps
    text = departure.prefix + departure.token + rest.text
    return Completion(text, first.prompt_tokens + rest.prompt_tokens,
                      first.output_tokens + rest.output_tokens, steps)


def _squashed(text: str) -> str:
    return "".join(text.split())
