"""The domain objects that flow through Revisor, from datasets and diffs to suggestions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RevisionTask:
    """Code to revise and the review comment to follow ("" asks for an unprompted review).

    `before` and `after` are the lines around the code, shown to the model for reference only.
    """

    code: str
    comment: str
    language: str = ""
    before: str = ""
    after: str = ""


@dataclass(frozen=True)
class Example:
    """One review-to-revision pair from a dataset.

    `peers` maps a published system's name to its stored prediction for this record,
    so benchmarks can score it with the same metric code on the same rows.
    """

    id: str
    code_before: str
    comment: str
    code_after: str
    language: str = ""
    peers: Mapping[str, str] = field(default_factory=dict)
    created_at: str = ""
    """When the review comment was written (ISO 8601), where the dataset says: splits by time."""

    @property
    def task(self) -> RevisionTask:
        return RevisionTask(self.code_before, self.comment, self.language)


@dataclass(frozen=True)
class Revision:
    """The model's revised code, re-indented to match the original, and how sure the model is
    that it is right (see `model.confidence`; None before it is known)."""

    code: str
    confidence: float | None = None


@dataclass(frozen=True)
class NoRevision:
    """The model proposed nothing usable; `reason` says why."""

    reason: str


@dataclass(frozen=True)
class LowConfidence(NoRevision):
    """The model revised the code, but with a confidence below the threshold: not suggested."""

    code: str = ""
    confidence: float = 0.0
    threshold: float = 0.0


@dataclass(frozen=True)
class BrokenSyntax(NoRevision):
    """The model revised the code, but the revision adds parse errors the original did not have
    (`model.syntax`): not suggested."""

    code: str = ""


RevisionOutcome = Revision | NoRevision
