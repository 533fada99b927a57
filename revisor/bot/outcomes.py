"""What became of each suggestion Revisor posted: applied, changed otherwise, or left as it was.

A suggestion is applied when a later head holds its lines where the commented lines were, as
GitHub's "Commit suggestion" leaves them; changed when a later commit rewrote those lines some
other way; left when the pull request closed with them as they were. Until one of those, it is
pending. The job store keeps the ledger; `revisor report` reads it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

from revisor.bot.diff import follow, kept, line_opcodes, moved_elsewhere, pair_texts, touched
from revisor.model.languages import language_of_path
from revisor.model.schema import Example
from revisor.training.datasets import codereviewer_record

OUTCOMES = ("applied", "changed", "left")


@dataclass(frozen=True)
class PostedSuggestion:
    key: str
    """The fingerprint of the comment that carried it: one entry per posted suggestion."""
    repo: str
    pull: int
    commit: str
    """The commit whose lines it replaces (the head it was posted on)."""
    path: str
    start: int
    end: int
    original: str
    suggestion: str
    comment: str
    """The reviewer's comment it answered; "" in a review Revisor made unprompted."""
    model: str
    posted_at: float
    outcome: str = "pending"
    settled_at: float | None = None
    code_before: str = ""
    """Once applied: as `revisor mine` records a pair (`diff.pair_texts`), the commented lines as
    posted on..."""
    code_after: str = ""
    """...and as committed ("": settled by an earlier version, which kept neither)."""

    @property
    def pull_key(self) -> str:
        return f"{self.repo}#{self.pull}"

    @property
    def ledger_key(self) -> str:
        """Its entry in the ledger: a head (and so a review's fingerprint) can be shared by two
        pull requests."""
        return f"{self.pull_key}/{self.key}"

    @property
    def same_as(self) -> tuple:
        """What makes two posted suggestions one: the same lines of a file of one pull request, and
        the same change (asked for twice, or suggested again in the review of a later head)."""
        return self.repo, self.pull, self.path, self.original, self.suggestion

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str | bytes) -> PostedSuggestion:
        return cls(**json.loads(text))

    def settled(self, outcome: str, before: list[str] | None = None,
                after: list[str] | None = None) -> PostedSuggestion:
        """With its outcome; an applied one also keeps its lines in context from `before`, the
        file it was posted on, and `after`, the file that applied it."""
        if outcome != "applied" or before is None or after is None:
            return replace(self, outcome=outcome, settled_at=time.time())
        code_before, code_after = pair_texts(before, after, self.start - 1, self.end)
        return replace(self, outcome=outcome, settled_at=time.time(), code_before=code_before,
                       code_after=code_after)


def judge(posted: PostedSuggestion, before: list[str] | None, after: list[str] | None) -> str:
    """`posted`'s outcome from its file at the commit it was posted on and at a later head
    (None: no such file there): applied when the lines where the commented ones were are now
    exactly the suggestion's, as "Commit suggestion" leaves them; changed when those lines were
    rewritten otherwise; pending while they stand, where they were or, cut and pasted, elsewhere
    (lines added beside them leave them standing)."""
    if before is None or after is None:
        return "changed"  # the file was removed: not by the suggestion
    start, end = posted.start - 1, posted.end
    ops = line_opcodes(before, after)
    if not touched(ops, start, end):
        return "pending"
    if moved_elsewhere(before, after, ops, start, end):
        return "pending"  # cut and pasted elsewhere as they were: neither applied nor rewritten
    low, high = follow(ops, start, end)
    now = [line.rstrip() for line in after[low:high]]
    if now == [line.rstrip() for line in posted.suggestion.splitlines()]:
        return "applied"
    rewritten = any(tag != "equal" and (i1 < end and i2 > start if i1 < i2 else start < i1 < end)
                    for tag, i1, i2, _, _ in ops)
    return "changed" if rewritten else "pending"


def settle(pending: list[PostedSuggestion], lines_at: Callable[[str, str], list[str] | None],
           lines_later: Callable[[str, str, str], tuple[str, list[str]] | None], head: str,
           closed: bool) -> list[PostedSuggestion]:
    """What `head` says of the pending suggestions that is new: those it settles (every one, once
    the pull request is closed: those still as they were are left), and those still pending in a
    file that changed (lines added above or beside them, cut and pasted, the file renamed),
    anchored afresh at `head`, so that the next push is judged against the lines as they stand.
    `lines_at(path, ref)` reads a file; `lines_later(path, commit, head)` its name and lines at
    `head`, under the name a rename since `commit` gave it."""
    updates = []
    for posted in pending:
        before, later = lines_at(posted.path, posted.commit), lines_later(posted.path, posted.commit, head)
        after = later[1] if later else None
        outcome = judge(posted, before, after)
        if outcome == "pending" and closed:
            outcome = "left"
        if outcome != "pending":
            updates.append(posted.settled(outcome, before, after))
            continue
        assert before is not None and later is not None  # a file gone is judged changed
        start, end = standing(before, after, posted.start - 1, posted.end)
        if later != (posted.path, before):  # the file changed: judge the next push from here
            updates.append(replace(posted, commit=head, path=later[0], start=start + 1, end=end))
    return updates


def standing(before: list[str], after: list[str], start: int, end: int) -> tuple[int, int]:
    """Where lines [start, end) of `before`, standing as they were (a pending suggestion's), are
    in `after`: where the diff keeps them, or where they were pasted."""
    ops = line_opcodes(before, after)
    block = [line.rstrip() for line in before[start:end]]
    pasted = sorted(j for tag, _, _, j1, j2 in ops if tag != "equal" for j in range(j1, j2))
    if moved_elsewhere(before, after, ops, start, end):
        for at in pasted:
            if [line.rstrip() for line in after[at:at + len(block)]] == block:
                return at, at + len(block)
    return kept(ops, start, end) or follow(ops, start, end)


def distinct(suggestions: list[PostedSuggestion]) -> list[PostedSuggestion]:
    """The first of each suggestion posted more than once (`same_as`): one change, counted once."""
    first: dict[tuple, PostedSuggestion] = {}
    for posted in sorted(suggestions, key=lambda p: p.posted_at):
        first.setdefault(posted.same_as, posted)
    return list(first.values())


def acceptance(suggestions: list[PostedSuggestion], group: Callable[[PostedSuggestion], str]) -> list[dict]:
    """Per group, the suggestions posted (each once), each outcome, and the rate applied among
    those decided."""
    rows: dict[str, dict] = {}
    for s in distinct(suggestions):
        row = rows.setdefault(group(s), {"group": group(s), "posted": 0, "pending": 0,
                                         **dict.fromkeys(OUTCOMES, 0)})
        row["posted"] += 1
        row[s.outcome] += 1
    for row in rows.values():
        decided = sum(row[o] for o in OUTCOMES)
        row["acceptance"] = row["applied"] / decided if decided else None
    return sorted(rows.values(), key=lambda r: r["group"])


def applied_records(suggestions: list[PostedSuggestion], repo: str | None) -> tuple[list[dict], int]:
    """The applied suggestions that answered a reviewer's comment, as review-to-revision records
    (`revisor mine --from-jobs`), and how many applied ones answered none (unprompted reviews)."""
    applied = [s for s in distinct(suggestions) if s.outcome == "applied" and repo in (None, s.repo)]
    records = []
    for s in applied:
        if not s.comment:
            continue
        posted = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(s.posted_at))
        example = Example(s.ledger_key, s.code_before or s.original.rstrip("\n"), s.comment,
                          s.code_after or s.suggestion.rstrip("\n"), language_of_path(s.path),
                          created_at=posted)
        records.append(codereviewer_record(example) | {"source": {
            "repo": s.repo, "pull": s.pull, "path": s.path, "lines": [s.start, s.end],
            "commit_before": s.commit, "model": s.model, "suggestion": s.key}})
    return records, len(applied) - len(records)
