"""The review pipeline shared by `revisor review`, the GitHub App and the Action:
diff -> regions (within a budget) -> revisions -> suggestions."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from revisor.bot.diff import Diff, Region
from revisor.model.errors import RevisorError
from revisor.model.reviser import Reviser
from revisor.model.schema import LowConfidence, NoRevision

CONTEXT_LINES = 8
"""Lines of the hunk around commented lines that the model sees for reference."""


@dataclass(frozen=True)
class LineComment:
    """A reviewer's comment on new-side lines `start`..`end` of `path`."""

    path: str
    start: int
    end: int
    text: str

    @classmethod
    def parse(cls, spec: str) -> LineComment:
        """From `PATH:LINE[-END]=TEXT`."""
        match = re.fullmatch(r"(?P<path>[^:=]+):(?P<start>\d+)(?:-(?P<end>\d+))?=(?P<text>.+)", spec, re.S)
        if not match:
            raise RevisorError(f"bad --comment {spec!r}: write PATH:LINE[-END]=TEXT")
        start = int(match["start"])
        end = int(match["end"] or start)
        if end < start:
            raise RevisorError(f"bad --comment {spec!r}: END is before LINE")
        return cls(match["path"], start, end, match["text"].strip())


@dataclass(frozen=True)
class Budget:
    max_files: int = 20
    max_regions: int = 40
    max_tokens: int = 24_000
    """Estimated prompt tokens of code across all regions (about 3 characters a token)."""


@dataclass(frozen=True)
class Suggestion:
    region: Region
    replacement: str
    rationale: str | None
    confidence: float | None = None


@dataclass
class ReviewResult:
    suggestions: list[Suggestion] = field(default_factory=list)
    no_suggestion: list[tuple[Region, NoRevision, str]] = field(default_factory=list)
    """The regions with no suggestion: why (a held-back one is a `LowConfidence`), and the comment."""
    over_budget: list[tuple[Region, str]] = field(default_factory=list)
    skipped_files: list[tuple[str, str]] = field(default_factory=list)
    regions_reviewed: int = 0

    @property
    def low_confidence(self) -> int:
        """Of `no_suggestion`, the regions revised with a confidence below the threshold."""
        return sum(isinstance(outcome, LowConfidence) for _, outcome, _ in self.no_suggestion)


def select_within_budget(
    targets: list[tuple[Region, str]], budget: Budget, result: ReviewResult
) -> list[tuple[Region, str]]:
    """The targets that fit the budget, in order; the rest are recorded, never dropped silently."""
    chosen, files, tokens = [], set(), 0
    for region, comment in targets:
        cost = len(region.code) // 3 + 1
        if region.path not in files and len(files) >= budget.max_files:
            reason = f"over --max-files {budget.max_files}"
        elif len(chosen) >= budget.max_regions:
            reason = f"over --max-regions {budget.max_regions}"
        elif tokens + cost > budget.max_tokens:
            reason = f"over --max-tokens {budget.max_tokens}"
        else:
            chosen.append((region, comment))
            files.add(region.path)
            tokens += cost
            continue
        result.over_budget.append((region, reason))
    return chosen


def review(diff: Diff, reviser: Reviser, comments: list[LineComment], budget: Budget,
           min_confidence: float | None = None) -> ReviewResult:
    """Revise the commented lines (or, with no comments, every changed region) of a diff;
    `min_confidence` overrides the reviser's threshold."""
    result = ReviewResult(skipped_files=[(path, "binary file") for path in diff.binary_files])
    if comments:
        targets = [(diff.region_at(c.path, c.start, c.end, CONTEXT_LINES), c.text) for c in comments]
    else:
        targets = [(region, "") for region in diff.changed_regions()]
    targets = select_within_budget(targets, budget, result)
    answers = reviser.revise([region.task(comment) for region, comment in targets], min_confidence)
    for (region, comment), answer in zip(targets, answers, strict=True):
        outcome = answer.outcome
        if isinstance(outcome, NoRevision):
            result.no_suggestion.append((region, outcome, comment))
        else:
            result.suggestions.append(Suggestion(region, outcome.code, comment or None, outcome.confidence))
    result.regions_reviewed = len(targets)
    return result
