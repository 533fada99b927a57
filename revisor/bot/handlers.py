"""What Revisor does for each kind of webhook event, given a `ReviewContext`."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime

from github import GithubException
from requests import RequestException

from revisor.bot.config import RepoConfig
from revisor.bot.github import PullRequestAPI
from revisor.bot.jobs import JobStore
from revisor.bot.metrics import SUGGESTION_OUTCOMES, SUGGESTIONS
from revisor.bot.outcomes import PostedSuggestion, settle
from revisor.bot.pipeline import CONTEXT_LINES, Budget, ReviewResult, Suggestion, review
from revisor.bot.placement import (
    Placed,
    Unplaceable,
    fingerprint,
    head_marker,
    marker,
    place,
    plain_note,
    suggestion_body,
    unmarked,
    within_limit,
)
from revisor.model.errors import DiffError, RevisorError
from revisor.model.prompts import inline_code
from revisor.model.reviser import Reviser
from revisor.model.schema import LowConfidence, NoRevision

PULL_REQUEST_ACTIONS = {"opened", "reopened", "ready_for_review", "synchronize", "closed"}
REVIEW_COMMAND = re.compile(r"^[ \t]*/revisor[ \t]+review\b", re.I | re.M)
"""Linear in the comment's length: `\s*` after `^` in multi-line mode would rescan every run of
blank lines from each of its starts."""


def field(data: object, *path: str) -> object:
    """`data[path[0]][path[1]]...`, or None where a step is missing or not an object: a delivery
    is signed by GitHub but its shape is still checked, never trusted."""
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def is_from_bot(payload: dict) -> bool:
    login = field(payload, "sender", "login")
    return field(payload, "sender", "type") == "Bot" or (isinstance(login, str) and login.endswith("[bot]"))


def wanted(event: str, payload: dict) -> bool:
    """The cheap check made before a delivery is queued: events Revisor acts on, from humans."""
    action = field(payload, "action")
    if not isinstance(action, str) or is_from_bot(payload):
        return False
    if event == "pull_request_review_comment":
        return action == "created"
    if event == "pull_request":
        return action in PULL_REQUEST_ACTIONS
    if event == "issue_comment":
        body = field(payload, "comment", "body")
        return (action == "created" and field(payload, "issue", "pull_request") is not None
                and isinstance(body, str) and bool(REVIEW_COMMAND.search(body)))
    return False


def mentions(text: str, bot_name: str) -> bool:
    return bool(re.search(rf"(^|\s)(/revise\b|@{re.escape(bot_name)}\b)", text, re.I))


def asks(event: str, payload: dict, bot_name: str) -> bool:
    """A person asked Revisor by name: `/revise` or `@<bot name>` in a review comment, or
    `/revisor review` in the conversation. Such a person always gets an answer."""
    body = field(payload, "comment", "body")
    if not isinstance(body, str) or field(payload, "action") != "created" or is_from_bot(payload):
        return False
    if event == "pull_request_review_comment":
        return mentions(body, bot_name)
    return event == "issue_comment" and bool(REVIEW_COMMAND.search(body))


def acknowledged_at_once(event: str, payload: dict, bot_name: str) -> bool:
    """Whether to react to the comment before the repository's configuration is read: it asked,
    and its author is one every repository allows by default (the handler reacts for the others
    its configuration allows)."""
    author = field(payload, "comment", "author_association")
    return asks(event, payload, bot_name) and author in RepoConfig().allowed_authors


MAX_REQUEST_AGE_S = 24 * 3600
"""`/revisor review` reviews the head of the moment: asked longer ago than this (a delivery sent
again days later), it is not acted on."""


def request_age_s(payload: dict) -> float | None:
    """Seconds since the comment that asked was written, if GitHub said when."""
    written = field(payload, "comment", "created_at")
    try:
        return time.time() - datetime.fromisoformat(written).timestamp()  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def no_suggestion_note(outcome: NoRevision) -> str:
    if isinstance(outcome, LowConfidence):
        return (f"Revisor has no suggestion confident enough to post here: its best answer has confidence "
                f"{outcome.confidence:.2f}, below the threshold {outcome.threshold:.2f}.")
    return f"Revisor has no suggestion here: {outcome.reason}."


def nothing_confident(result: ReviewResult) -> str:
    """The answer to `/revisor review` when no suggestion is posted."""
    held = result.low_confidence
    text = f"Revisor reviewed {result.regions_reviewed} changed region(s) and has no suggestion to post"
    if held:
        text += f": {held} answer(s) were held back as not confident enough"
    if result.over_budget:
        text += f"; {len(result.over_budget)} region(s) were over the budget and not reviewed"
    return text + "."


CAPPED = "max_answers_per_pull_request reached: no more answers on this pull request"


@dataclass
class ReviewContext:
    """One delivery: its event, payload, the pull request's API and a logger tagged with its id."""

    delivery_id: str
    event: str
    payload: dict
    api: PullRequestAPI
    log: logging.LoggerAdapter
    lock: Callable[[str], AbstractContextManager] = lambda key: nullcontext()
    """A lock shared by every worker (the job store's), by name."""
    ledger: JobStore | None = None
    """Where posted suggestions and their outcomes are kept (none in a GitHub Actions run)."""

    @property
    def repo(self) -> str:
        return str(field(self.payload, "repository", "full_name"))

    @property
    def pull_key(self) -> str:
        pull = self.payload.get("pull_request") or self.payload.get("issue") or {}
        return f"{self.repo}#{pull.get('number')}"

    def post_once(self, print_: str, write: Callable[[], None], cap: int | None = None) -> str | None:
        """Write what carries fingerprint `print_` unless it is on the pull request already, or
        `cap` answers are; None once written, else why not. One job of the pull request at a time
        checks and writes, so two jobs never both post, nor both take the last answer allowed."""
        with self.lock(self.pull_key):
            posted = self.api.posted_fingerprints()
            if print_ in posted:
                return "already answered"
            if cap is not None and len(posted) >= cap:
                return CAPPED
            write()
            return None

    def acknowledge(self) -> None:
        """An 👀 reaction on the comment that asked: seen, an answer follows. Never fails the job."""
        try:
            self.api.react(self.event, self.payload["comment"]["id"])
        except (GithubException, RequestException) as error:
            self.log.warning("could not react to the comment (%s): the answer still follows", error)

    def record(self, posted: PostedSuggestion) -> None:
        if self.ledger is not None:
            self.ledger.save_suggestion(posted)

    def settle_outcomes(self, head: str, closed: bool) -> str:
        """Record what became of the pull request's pending suggestions at `head`."""
        if self.ledger is None:
            return ""
        with self.lock(self.pull_key):
            pending = [s for s in self.ledger.suggestions(self.pull_key) if s.outcome == "pending"]
            updates = settle(pending, self.api.file_lines, self.api.lines_later, head, closed)
            settled = [posted for posted in updates if posted.outcome != "pending"]
            for posted in updates:
                self.ledger.save_suggestion(posted)
            for posted in settled:
                SUGGESTION_OUTCOMES.labels(posted.outcome).inc()
        counts = {o: sum(s.outcome == o for s in settled) for o in ("applied", "changed", "left")}
        return ", ".join(f"{n} suggestion(s) {o}" for o, n in counts.items() if n)


@dataclass
class Handlers:
    revisers: Callable[[str, str | None], Reviser]
    """A reviser for a prompt strategy name and an adapter name (None: the service's model)."""
    model_label: str
    bot_name: str = "revisor"
    default_strategy: str = "auto"
    close: Callable[[], None] = lambda: None
    """Closes the engines the revisers use."""

    def reviser(self, config: RepoConfig) -> Reviser:
        return self.revisers(config.strategy or self.default_strategy, config.adapter)

    def footer(self, config: RepoConfig, confidence: float | None = None) -> str:
        sure = f", confidence {confidence:.2f}" if confidence is not None else ""
        return (f"<sub>Automatic suggestion by Revisor ({self.model_name(config)}{sure}); review it before "
                "you commit it.</sub>")

    def model_name(self, config: RepoConfig) -> str:
        """What answers for this repository: its adapter (a LoRA module's name), or the model."""
        return config.adapter or self.model_label

    def handle(self, ctx: ReviewContext) -> str:
        """Act on the delivery; return what was done, for the job record and the logs."""
        action = ctx.payload.get("action")
        if ctx.event == "pull_request" and action in ("synchronize", "closed"):
            head = ctx.payload["pull_request"]["head"]["sha"]
            # An event for a head the pull request has left (retried, sent again) settles nothing:
            # judged at that head, suggestions posted since would look rewritten.
            stale = action == "synchronize" and head != ctx.api.pull.head.sha
            settled = "" if stale else ctx.settle_outcomes(head, action == "closed")
            if action == "closed":
                return settled or "closed: no suggestion was pending"
            if settled:
                ctx.log.info("outcomes: %s", settled)
        asked = asks(ctx.event, ctx.payload, self.bot_name)
        try:
            config = RepoConfig.parse(ctx.api.config_text())
        except RevisorError as error:
            if asked:  # the job fails for good; the person who asked is told why
                self.say(ctx, RepoConfig(), f"Revisor could not answer: {error}.")
            raise
        author = ctx.payload.get("comment") or ctx.payload.get("pull_request") or {}
        association = author.get("author_association", "NONE")
        if association not in config.allowed_authors:
            return f"author is {association}, not one of allowed_authors in .github/revisor.yml"
        if asked:
            ctx.acknowledge()
        if ctx.event == "pull_request_review_comment":
            return self.answer_comment(ctx, config)
        if ctx.event == "pull_request":
            pull = ctx.payload["pull_request"]
            if not config.review_pull_requests:
                return "pull request reviews are off (review_pull_requests in .github/revisor.yml)"
            if pull.get("draft") and config.skip_drafts:
                return "draft pull request skipped"
            return self.review_pull_request(ctx, config, pull["head"]["sha"])
        if ctx.event == "issue_comment":
            if (age := request_age_s(ctx.payload)) is not None and age > MAX_REQUEST_AGE_S:
                return f"asked {age / 3600:.0f} h ago: a review of today's head was not what was asked"
            return self.review_pull_request(ctx, config, ctx.api.pull.head.sha)
        return f"{ctx.event} is not handled"

    def posted(self, ctx: ReviewContext, config: RepoConfig, print_: str, commit: str,
               suggestion: Suggestion) -> PostedSuggestion:
        region = suggestion.region
        return PostedSuggestion(print_, ctx.repo, ctx.api.pull.number, commit, region.path, region.start,
                                region.end, region.code, suggestion.replacement, suggestion.rationale or "",
                                self.model_name(config), time.time())

    def say(self, ctx: ReviewContext, config: RepoConfig, text: str) -> bool:
        """Tell the person who asked, once: in the review comment's thread, or in the conversation.
        `text` may quote what others chose (a file name): no marker in it stays live."""
        comment = ctx.payload["comment"]
        print_ = fingerprint("reply", comment["id"])
        body = f"{unmarked(text)}\n\n{self.footer(config)}\n{marker(print_)}"
        if ctx.event == "pull_request_review_comment":
            thread = comment.get("in_reply_to_id") or comment["id"]  # GitHub takes no reply to a reply
            return ctx.post_once(print_, lambda: ctx.api.reply(thread, body)) is None
        return ctx.post_once(print_, lambda: ctx.api.comment(body)) is None

    def answer_comment(self, ctx: ReviewContext, config: RepoConfig) -> str:
        comment = ctx.payload["comment"]
        body = comment.get("body") or ""
        asked = mentions(body, self.bot_name)
        if config.review_comments == "mention" and not asked:
            return "comment does not mention Revisor"
        if "LEFT" in (comment.get("side", "RIGHT"), comment.get("start_side")) or comment.get("line") is None:
            return self.cannot(ctx, config, asked, "the comment is not on the new side of the diff")
        path, end = comment["path"], comment["line"]
        start = comment.get("start_line") or end
        if not config.wants(path):
            return self.cannot(ctx, config, asked, f"{inline_code(path)} is excluded by .github/revisor.yml")
        print_ = fingerprint("reply", comment["id"])
        thread = comment.get("in_reply_to_id") or comment["id"]  # GitHub takes no reply to a reply
        posted = ctx.api.posted_fingerprints()
        if print_ in posted:
            return "already answered"
        if len(posted) >= config.max_answers_per_pull_request:
            return CAPPED
        try:
            diff = ctx.api.diff_at(comment.get("commit_id"))
            region = diff.region_at(path, start, end, context=CONTEXT_LINES)
        except DiffError as error:
            return self.cannot(ctx, config, asked, str(error))
        instruction = re.sub(rf"/revise\b|@{re.escape(self.bot_name)}\b", "", body, flags=re.I).strip()
        answer = self.reviser(config).revise([region.task(instruction)], config.min_confidence)[0]
        outcome = answer.outcome
        if isinstance(outcome, NoRevision):
            SUGGESTIONS.labels("below threshold" if isinstance(outcome, LowConfidence) else "skipped").inc()
            if asked or config.note_when_no_suggestion:
                self.say(ctx, config, no_suggestion_note(outcome))
            return f"no suggestion: {outcome.reason}"
        suggestion = Suggestion(region, outcome.code, instruction, outcome.confidence)
        body = suggestion_body(suggestion, self.footer(config, outcome.confidence), print_)
        refused = ctx.post_once(print_, lambda: ctx.api.reply(thread, body),
                                config.max_answers_per_pull_request)
        if refused:
            return refused
        SUGGESTIONS.labels("posted").inc()
        ctx.record(self.posted(ctx, config, print_, comment.get("commit_id") or ctx.api.pull.head.sha,
                               suggestion))
        return f"replied with a suggestion for {region.location}"

    def cannot(self, ctx: ReviewContext, config: RepoConfig, asked: bool, why: str) -> str:
        """Why there is no answer: said to a person who asked, returned for the job's record."""
        if asked:
            self.say(ctx, config, f"Revisor could not answer: {why}.")
        return f"cannot revise: {why}"

    def review_pull_request(self, ctx: ReviewContext, config: RepoConfig, head_sha: str) -> str:
        print_ = fingerprint("review", head_sha)
        posted = ctx.api.posted_fingerprints()
        if print_ in posted:
            return "already reviewed this head"
        if len(posted) >= config.max_answers_per_pull_request:
            return CAPPED
        if head_sha != ctx.api.pull.head.sha:  # its files are another commit's now
            return "the pull request has a newer head: the event for that head reviews it"
        pull_diff = ctx.api.diff_at(head_sha)
        last = ctx.api.last_reviewed_head() if ctx.event == "pull_request" else None
        changed = ctx.api.compare_diff(last, head_sha) if last else pull_diff
        result = review(changed.filtered(config.wants), self.reviser(config), [],
                        Budget(config.max_files, config.max_regions), config.min_confidence)
        unsure = result.low_confidence
        SUGGESTIONS.labels("below threshold").inc(unsure)
        SUGGESTIONS.labels("skipped").inc(result.regions_reviewed - len(result.suggestions) - unsure)
        placements = [place(s, pull_diff) for s in result.suggestions]
        placed = [p for p in placements if isinstance(p, Placed)][: config.max_suggestions]
        notes = [plain_note(p) for p in placements if isinstance(p, Unplaceable)]
        if not placed and not notes:
            if ctx.event == "issue_comment":  # asked with /revisor review: say what was found
                self.say(ctx, config, nothing_confident(result))
            return f"no suggestions from {result.regions_reviewed} region(s)"
        comments = [
            p.review_comment(self.footer(config, p.suggestion.confidence),
                             fingerprint("review", head_sha, p.suggestion.region.location))
            for p in placed
        ]
        summary = (f"Revisor reviewed {result.regions_reviewed} changed region(s) and suggests "
                   f"{len(comments)} revision(s).")
        if result.over_budget:
            summary += f" {len(result.over_budget)} region(s) were over the budget and not reviewed."
        body = within_limit(summary, notes,
                            f"\n\n{self.footer(config)}\n{marker(print_)}\n{head_marker(head_sha)}")
        as_comments: list[bool] = []
        refused = ctx.post_once(print_, lambda: as_comments.append(ctx.api.review(head_sha, body, comments)),
                                config.max_answers_per_pull_request)
        if refused:
            return refused
        if not as_comments[0]:  # in the review's body as text: nothing to commit, nothing to settle
            SUGGESTIONS.labels("in review body").inc(len(comments) + len(notes))
            return (f"posted a review with {len(comments)} suggestion(s) in its body: GitHub refused them "
                    "as comments")
        SUGGESTIONS.labels("posted").inc(len(comments))
        for p in placed:
            location = p.suggestion.region.location
            ctx.record(self.posted(ctx, config, fingerprint("review", head_sha, location), head_sha,
                                   p.suggestion))
        SUGGESTIONS.labels("in review body").inc(len(notes))
        return f"posted a review with {len(comments)} suggestion(s)"
