"""Prompt strategies: zero-shot, few-shot (BM25 demonstrations), persona, fine-tuned format
(alone, or after BM25 demonstrations in the same format).

Every strategy renders a chat whose last message is the assistant's opening code fence, so
the model answers with code alone and generation stops at the closing fence (see `STOP`).
The fine-tuned format is the one template training uses too (`FineTunedFormat.training_chat`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, Protocol, get_args

from revisor.model.errors import RevisorError
from revisor.model.languages import normalize_language
from revisor.model.parsing import context_lines
from revisor.model.schema import Example, RevisionTask

Message = dict[str, str]

STOP = ("```",)
"""Generation ends at the closing fence of the one code block the model writes."""

INSTRUCTION = (
    "You revise code after a code review. You get code under review and a reviewer's "
    "comment. Reply with the complete revised code in one fenced code block and nothing "
    "else. Change only what the comment asks for."
)
UNPROMPTED_COMMENT = "Review this code and improve it if it needs it."
PERSONA = "You are an expert software developer in {language}."


def opening_fence(language: str) -> str:
    return f"```{normalize_language(language)}\n"


def fence_for(code: str) -> str:
    """A code fence longer than any backtick run inside `code`."""
    longest = max((len(run) for run in re.findall(r"`+", code)), default=0)
    return "`" * max(3, longest + 1)


def inline_code(text: str) -> str:
    """`text` as Markdown inline code that nothing in it can close (a file name may hold
    backticks): delimited by a longer run of backticks, as CommonMark allows."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    ticks = "`" * (longest + 1)
    return f"{ticks} {text} {ticks}" if longest else f"`{text}`"


def fenced(code: str, info: str) -> str:
    """`code` in a fence; `info` is a language (normalized) or a word such as "suggestion"."""
    fence = fence_for(code)
    return f"{fence}{normalize_language(info)}\n{code.rstrip(chr(10))}\n{fence}"


def as_hunk(task: RevisionTask, lines: int) -> RevisionTask:
    """The code with `lines` lines around it, as one block: adapters learn on whole diff hunks,
    not on lines set apart from their context (parsing keeps only the code's part of the answer)."""
    before, after = context_lines(task.before, task.after, lines)
    return RevisionTask("\n".join([*before, task.code.rstrip("\n"), *after]), task.comment, task.language)


def query_message(task: RevisionTask) -> str:
    comment = task.comment.strip() or UNPROMPTED_COMMENT
    parts = []
    if task.before.strip():
        parts.append(f"Code just before it (do not repeat it):\n{fenced(task.before, task.language)}\n\n")
    parts.append(f"Code under review:\n{fenced(task.code, task.language)}\n\n")
    if task.after.strip():
        parts.append(f"Code just after it (do not repeat it):\n{fenced(task.after, task.language)}\n\n")
    return "".join(parts) + f"Review comment: {comment}"


class PromptStrategy(Protocol):
    name: str
    hunk_context: int
    """Lines around the code shown as part of it (0: shown apart, as context not to repeat)."""

    def render(self, task: RevisionTask) -> list[Message]:
        """The chat for one task, ending with the assistant's opening code fence."""
        ...


@dataclass
class ZeroShot:
    persona: bool = False
    name: str = "zero-shot"
    hunk_context: int = 0

    def system(self, language: str) -> str:
        if not self.persona:
            return INSTRUCTION
        lang = normalize_language(language) or "the language of the code"
        return PERSONA.format(language=lang) + " " + INSTRUCTION

    def render(self, task: RevisionTask) -> list[Message]:
        return [
            {"role": "system", "content": self.system(task.language)},
            {"role": "user", "content": query_message(task)},
            {"role": "assistant", "content": opening_fence(task.language)},
        ]


class Retriever(Protocol):
    def top_k(self, task: RevisionTask, k: int) -> list[Example]: ...


@dataclass
class FewShot(ZeroShot):
    """Zero-shot plus k demonstrations retrieved by BM25, as earlier chat turns.

    The instruction and the demonstrations come before the query, so vLLM's prefix cache
    can reuse them across requests that share them.
    """

    retriever: Retriever | None = None
    k: int = 3
    name: str = "few-shot"

    def render(self, task: RevisionTask) -> list[Message]:
        if self.retriever is None:
            raise ValueError("FewShot needs a retriever")
        messages: list[Message] = [{"role": "system", "content": self.system(task.language)}]
        for demo in self.retriever.top_k(task, self.k):
            messages.append({"role": "user", "content": query_message(demo.task)})
            messages.append({"role": "assistant", "content": fenced(demo.code_after, demo.language)})
        messages.append({"role": "user", "content": query_message(task)})
        messages.append({"role": "assistant", "content": opening_fence(task.language)})
        return messages


@dataclass
class FineTunedFormat:
    """The terse template of fine-tuned adapters, shared by inference and training; with a
    retriever, `k` retrieved pairs in the same template come first, as earlier chat turns."""

    name: str = "fine-tuned"
    hunk_context: int = 3
    """Lines around the commented ones shown as part of the code, as in a diff hunk."""
    retriever: Retriever | None = None
    k: int = 0

    def query(self, task: RevisionTask) -> Message:
        return {"role": "user", "content": query_message(as_hunk(task, self.hunk_context))}

    def render(self, task: RevisionTask) -> list[Message]:
        messages: list[Message] = []
        for demo in self.retriever.top_k(task, self.k) if self.retriever else []:
            messages.append(self.query(demo.task))
            messages.append({"role": "assistant", "content": fenced(demo.code_after, demo.language)})
        return [*messages, self.query(task), {"role": "assistant", "content": opening_fence(task.language)}]

    def training_chat(self, example: Example) -> tuple[list[Message], str]:
        """The prompt (ending with the opening fence) and the target the loss is computed on."""
        return self.render(example.task), example.code_after.rstrip("\n") + "\n" + STOP[0]


StrategyName = Literal["zero-shot", "few-shot", "fine-tuned", "fine-tuned+retrieval"]
STRATEGIES: tuple[str, ...] = get_args(StrategyName)
RETRIEVING = ("few-shot", "fine-tuned+retrieval")
"""The strategies that put retrieved pairs before the query: they need a pool."""
FINE_TUNED = ("fine-tuned", "fine-tuned+retrieval")
"""The strategies in the template adapters are trained on."""


def make_strategy(
    name: str, *, persona: bool = False, retriever: Retriever | None = None, k: int = 3
) -> PromptStrategy:
    if name not in STRATEGIES:
        raise RevisorError(f"unknown strategy {name!r}: choose one of {', '.join(STRATEGIES)}")
    if name in RETRIEVING and retriever is None:
        raise RevisorError(f"the {name} strategy needs a retrieval pool (--pool FILE)")
    if name == "zero-shot":
        return ZeroShot(persona=persona)
    if name == "few-shot":
        return FewShot(persona=persona, retriever=retriever, k=k)
    if name == "fine-tuned":
        return FineTunedFormat()
    return FineTunedFormat(name=name, retriever=retriever, k=k)


def max_new_tokens(code: str, cap: int = 1024) -> int:
    """Bound generation by the input's length: a revision is rarely much longer than its input.

    Code runs at roughly 3 characters per token; allow about 1.5x the input plus slack.
    """
    return min(cap, 64 + len(code) // 2)
