"""Where a suggestion may go on a pull request, decided before GitHub sees it.

A GitHub suggestion replaces the commented lines of the new side ("RIGHT"); the lines must
lie in one hunk of the pull request's diff, or GitHub answers 422. `place` checks that and
marks each suggestion placeable or not, with the reason; posting decides what to do with it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from revisor.bot.diff import Diff
from revisor.bot.pipeline import Suggestion
from revisor.model.errors import DiffError
from revisor.model.prompts import fenced, inline_code

MARKER = re.compile(r"<!-- revisor:(?P<fingerprint>[0-9a-f]{16}) -->")
HEAD_MARKER = re.compile(r"<!-- revisor-head:(?P<sha>[0-9a-f]{7,64}) -->")


@dataclass(frozen=True)
class Placed:
    """A suggestion GitHub will accept on `path` lines `start`..`end` of the RIGHT side."""

    suggestion: Suggestion

    def review_comment(self, footer: str, fingerprint: str) -> dict:
        region = self.suggestion.region
        comment = {"path": region.path, "line": region.end, "side": "RIGHT",
                   "body": suggestion_body(self.suggestion, footer, fingerprint)}
        if region.start != region.end:
            comment.update(start_line=region.start, start_side="RIGHT")
        return comment


@dataclass(frozen=True)
class Unplaceable:
    suggestion: Suggestion
    reason: str


def place(suggestion: Suggestion, pull_request_diff: Diff) -> Placed | Unplaceable:
    region = suggestion.region
    try:
        pull_request_diff.region_at(region.path, region.start, region.end)
    except DiffError as error:
        return Unplaceable(suggestion, str(error))
    return Placed(suggestion)


def fingerprint(*parts: object) -> str:
    return hashlib.sha256("\0".join(map(str, parts)).encode()).hexdigest()[:16]


def marker(print_: str) -> str:
    """A hidden tag that lets Revisor find what it already posted."""
    return f"<!-- revisor:{print_} -->"


def head_marker(sha: str) -> str:
    """A hidden tag naming the head commit a review covered."""
    return f"<!-- revisor-head:{sha} -->"


def unmarked(text: str) -> str:
    """Model output without anything that reads as one of Revisor's hidden markers, nested ones
    too: removing `<!-- revisor:F -->` from inside another leaves a live one, so until none is left."""
    while (cleaned := HEAD_MARKER.sub("", MARKER.sub("", text))) != text:
        text = cleaned
    return text


MAX_BODY_CHARS = 65_536
"""GitHub refuses a comment or review whose body is longer."""


def within_limit(head: str, notes: list[str], tail: str = "") -> str:
    """`head`, as many of `notes` as GitHub's limit leaves room for, a line for the rest, and
    `tail` (the footer and markers, which must stay)."""
    kept: list[str] = []
    room = MAX_BODY_CHARS - len(head) - len(tail) - 200  # the line saying what was left out
    for note in notes:
        if len(note) + 2 > room:
            break
        kept.append(note)
        room -= len(note) + 2
    if left := len(notes) - len(kept):
        kept.append(f"{left} more proposed revision(s) left out: GitHub takes {MAX_BODY_CHARS:,} characters "
                    "at most in one review.")
    return "\n\n".join([head, *kept]) + tail


def suggestion_body(suggestion: Suggestion, footer: str, print_: str) -> str:
    return f"{fenced(unmarked(suggestion.replacement), 'suggestion')}\n\n{footer}\n{marker(print_)}"


def plain_note(placement: Unplaceable) -> str:
    """For a review's body: a revision GitHub would not take as a suggestion."""
    s = placement.suggestion
    return (f"Proposed revision of {inline_code(s.region.location)} (not placeable as a suggestion: "
            f"{placement.reason}):\n\n{fenced(unmarked(s.replacement), '')}")
