"""The shape of each event Revisor acts on, checked before a delivery is stored.

GitHub signs what it sends, but a signed body can still lack a field or carry another type (a
replayed, hand-made or mangled delivery): stored, it would fail in a worker, attempt after attempt.
Only the fields the handlers read are checked; GitHub's others pass as they are. Types are strict:
a line number sent as a string is refused, not converted.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, ValidationError


class _Part(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class Repository(_Part):
    full_name: str


class Installation(_Part):
    id: int


class Head(_Part):
    sha: str


class PullRequest(_Part):
    number: int
    head: Head
    draft: bool | None = None


class ReviewComment(_Part):
    id: int
    body: str
    path: str
    line: int | None  # null on a comment whose line the diff no longer shows (GHES sends it so)
    start_line: int | None = None
    side: str | None = None
    start_side: str | None = None
    commit_id: str | None = None
    in_reply_to_id: int | None = None


class IssueComment(_Part):
    id: int
    body: str


class Issue(_Part):
    number: int
    pull_request: dict


class _Event(_Part):
    action: str
    repository: Repository
    installation: Installation | None = None  # an App's deliveries carry it; the Action's events do not


class ReviewCommentEvent(_Event):
    comment: ReviewComment
    pull_request: PullRequest


class IssueCommentEvent(_Event):
    comment: IssueComment
    issue: Issue


class PullRequestEvent(_Event):
    pull_request: PullRequest


EVENTS: dict[str, type[_Event]] = {
    "pull_request_review_comment": ReviewCommentEvent,
    "issue_comment": IssueCommentEvent,
    "pull_request": PullRequestEvent,
}


def malformed(event: str, payload: dict, from_app: bool = True) -> str | None:
    """What is wrong with an acted-on event's payload, in one line; None when nothing is. An App's
    delivery must name its installation."""
    try:
        checked = EVENTS[event].model_validate(payload)
    except ValidationError as error:
        first = error.errors()[0]
        return f"{'.'.join(map(str, first['loc'])) or 'payload'}: {first['msg']}"
    if from_app and checked.installation is None:
        return "installation: missing"
    return None
