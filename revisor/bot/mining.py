"""`revisor mine`: review-to-revision pairs from a repository's own pull requests.

A pair is a review comment on lines of a pull request and the first later commit of the same pull
request that changed those lines (the comment's `original_commit_id` and later): the comment, and
as a CodeReviewer hunk, the lines that commit changed there with three lines around them, before it
and after it. Records use the CodeReviewer JSONL schema that `revisor train`, `bench` and `data split`
read, plus `created_at` and where the pair came from.

Mining resumes: `<output>.state.json` lists the closed pull requests done (an open one is read
again by the next run, for the comments answered since), and records already in the output are
never written again. A run with another `--since` reads every pull request again.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from github.PullRequest import PullRequest
from github.PullRequestComment import PullRequestComment
from github.Repository import Repository

from revisor.bot.diff import Opcodes, follow, kept, line_opcodes, moved_elsewhere, pair_texts
from revisor.bot.github import file_lines
from revisor.model.errors import RevisorError
from revisor.model.languages import language_of_path
from revisor.model.schema import Example
from revisor.training.datasets import codereviewer_record

MAX_COMMIT_FILES = 3000
"""GitHub lists a commit's first 3,000 files, no more."""
MAX_PULL_COMMITS = 250
"""GitHub lists a pull request's first 250 commits, no more."""


@dataclass
class PullHistory:
    """One pull request's commits, and its files at any of them (each fetched once)."""

    repo: Repository
    commits: list[str]

    def __post_init__(self) -> None:
        self.lines_at = lru_cache(maxsize=64)(self._lines_at)
        self.commit = lru_cache(maxsize=256)(self.repo.get_commit)
        self.diff = lru_cache(maxsize=64)(self._diff)

    def _lines_at(self, sha: str, path: str) -> list[str] | None:
        return file_lines(self.repo, path, sha)

    def _diff(self, earlier: tuple[str, str], later: tuple[str, str]) -> Opcodes:
        """The line diff from a file at one commit to a file at another, each (sha, path): computed
        once for all the comments on that file."""
        return line_opcodes(self.lines_at(*earlier) or [], self.lines_at(*later) or [])

    def files_of(self, sha: str) -> dict[str, tuple[str, str]]:
        """What commit `sha` did to each file GitHub lists for it: old name -> (status, new name). A
        copy is a new file: the lines stay with the one it was copied from."""
        return {(f.previous_filename if f.status == "renamed" else f.filename): (f.status, f.filename)
                for f in self.commit(sha).files}

    def change_to(self, sha: str, path: str, lines: list[str]) -> tuple[str, str]:
        """What commit `sha` did to `path`, whose `lines` they were before it: (status, new name).
        From the commit's files, or, where GitHub listed only the first `MAX_COMMIT_FILES`, from the
        file itself (a rename then reads as a removal)."""
        listed = self.files_of(sha)
        if path in listed or len(listed) < MAX_COMMIT_FILES:
            return listed.get(path, ("unchanged", path))
        now = self.lines_at(sha, path)
        return ("removed" if now is None else "unchanged" if now == lines else "modified"), path

    def not_an_answer(self, sha: str, comment: PullRequestComment) -> str | None:
        """Why commit `sha`, though it changed the commented lines, did not answer the comment."""
        commit = self.commit(sha)
        if len(commit.parents) > 1:
            return "its lines changed in a merge, not in answer"
        if commit.commit.committer.date < comment.created_at:
            return "its lines changed in a commit made before it (a review begun on an older commit)"
        return None


def depth(lines: list[str]) -> float:
    """The indentation of the shallowest non-blank line (infinite where all are blank)."""
    return min((len(x.expandtabs()) - len(x.expandtabs().lstrip()) for x in lines if x.strip()),
               default=float("inf"))


def reaches(ops: Opcodes, before: list[str], after: list[str], start: int, end: int) -> bool:
    """Whether a commit changed lines [start, end) of `before`: rewrote or deleted some, inserted
    lines among them, or added lines right beside them at their depth ("add a check after this").
    A block added beside them but less indented (a new function below a method's last lines) is
    other work."""
    own = depth(before[start:end])
    for tag, i1, i2, j1, j2 in ops:
        if tag == "equal":
            continue
        if i1 < i2 and i1 < end and i2 > start or i1 == i2 and start < i1 < end:
            return True
        if i1 == i2 and i1 in (start, end) and depth(after[j1:j2]) >= own:
            return True
    return False


def skip_reason(comment: PullRequestComment) -> str | None:
    """Why a comment cannot be a pair before any code is read, or None."""
    if comment.in_reply_to_id:
        return "a reply"
    if comment.user is not None and (comment.user.type == "Bot" or comment.user.login.endswith("[bot]")):
        return "written by a bot"
    if comment.subject_type == "file" or comment.original_line is None:
        return "a comment on a whole file"
    if "LEFT" in (comment.side, comment.start_side):
        return "on deleted lines"
    if not language_of_path(comment.path):
        return "not code"
    return None


def mine_comment(history: PullHistory, pull: PullRequest, comment: PullRequestComment) -> dict | str:
    """The record for one review comment, or the reason it yields none."""
    reason = skip_reason(comment)
    if reason:
        return reason
    commit = comment.original_commit_id
    if commit not in history.commits:
        return "outdated (its commit left the pull request)"
    seen = history.lines_at(commit, comment.path)
    first = comment.original_start_line or comment.original_line
    if seen is None:
        return "not a file at its commit (a symlink or a submodule)"
    if not 1 <= first <= comment.original_line <= len(seen):
        return "outdated (its lines are not in the file)"
    region = (first - 1, comment.original_line)
    path, before, at = comment.path, seen, commit
    for later in history.commits[history.commits.index(commit) + 1:]:
        status, new_path = history.change_to(later, path, before)
        if status == "unchanged":
            continue
        if status == "removed":
            return "file deleted before its lines changed"
        after = history.lines_at(later, new_path) or []
        ops = history.diff((at, path), (later, new_path))
        if reaches(ops, before, after, *region):
            if reason := history.not_an_answer(later, comment):
                return reason
            if moved_elsewhere(before, after, ops, *region):
                return "its lines moved elsewhere unchanged, not answered"
            code_before, code_after = pair_texts(before, after, *region)
            example = Example(
                id=f"{history.repo.full_name}#{pull.number}/{comment.id}",
                code_before=code_before,
                comment=comment.body,
                code_after=code_after,
                language=language_of_path(comment.path),
                created_at=comment.created_at.isoformat(),
            )
            return codereviewer_record(example) | {"source": {
                "repo": history.repo.full_name, "pull": pull.number, "comment_id": comment.id,
                "url": comment.html_url, "path": comment.path, "path_after": new_path,
                "lines": [first, comment.original_line], "commit_before": commit, "commit_after": later}}
        region = kept(ops, *region) or follow(ops, *region)  # other lines changed: go on
        path, before, at = new_path, after, later
    return "never followed by a change"


@dataclass
class MiningRun:
    """One output file and what `<output>.state.json` keeps between runs into it."""

    output: Path
    repo: str
    since: str | None = None
    """The `--since` the pull requests done were read with."""
    pulls_done: list[int] = field(default_factory=list)
    """Closed pull requests whose every comment was read: no later run reads them again."""
    pulls_read: int = 0
    """Pull requests read by this run."""
    skipped: Counter = field(default_factory=Counter)
    """Comments this run read that cannot be pairs, by reason."""
    written: set[str] = field(default_factory=set)
    """Ids of the records in the output: a resumed run never writes one again."""

    @property
    def pairs(self) -> int:
        return len(self.written)

    @property
    def state_path(self) -> Path:
        return self.output.with_name(self.output.name + ".state.json")

    @classmethod
    def open(cls, output: Path, repo: str, since: datetime | None = None) -> MiningRun:
        """A new run, or the one that stopped; a last line cut short by an interruption is cut
        off (the records before it are never rewritten)."""
        run = cls(output, repo, since.isoformat() if since else None)
        if not output.exists():
            return run
        if not run.state_path.exists():
            raise RevisorError(f"{output} exists and is not a mining run's output: pass another --output")
        state = json.loads(run.state_path.read_text())
        if state["repo"] != repo:
            raise RevisorError(f"{output} holds pairs of {state['repo']}, not {repo}: pass another --output")
        text = output.read_bytes()
        complete = text[: text.rfind(b"\n") + 1]
        if len(complete) < len(text):
            os.truncate(output, len(complete))
        run.written = {json.loads(line)["_id"] for line in complete.decode("utf-8").splitlines() if line}
        if state.get("since") == run.since:  # else the pull requests done were read with another --since
            run.pulls_done = state["pulls_done"]
        return run

    def save(self) -> None:
        """Atomically and durably, so an interruption or a crash leaves the old state or the new one."""
        partial = self.state_path.with_suffix(".partial")
        with partial.open("w") as out:
            json.dump({"repo": self.repo, "since": self.since, "pulls_done": self.pulls_done,
                       "pairs": self.pairs}, out, indent=1)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, self.state_path)


def pulls_to_mine(repo: Repository, since: datetime | None, limit: int | None) -> Iterator[PullRequest]:
    """The pull requests updated since `since`, most recently updated first, at most `limit`."""
    for count, pull in enumerate(repo.get_pulls(state="all", sort="updated", direction="desc")):
        if (limit is not None and count >= limit) or (since and pull.updated_at < since):
            return
        yield pull


def pull_commits(repo: Repository, pull: PullRequest) -> list[str]:
    """The pull request's commits, oldest first: GitHub lists its first 250 only, and its compare
    view of the base and the head, a page at a time, all of them."""
    listed = [c.sha for c in pull.get_commits()]
    if len(listed) < MAX_PULL_COMMITS:
        return listed
    return [c.sha for c in repo.compare(pull.base.sha, pull.head.sha).commits]


def mine(repo: Repository, run: MiningRun, since: datetime | None = None, limit: int | None = None,
         on_pull: Callable[[MiningRun], None] = lambda run: None) -> MiningRun:
    """Append the pairs of `repo`'s pull requests to the run's output, skipping those done."""
    run.output.parent.mkdir(parents=True, exist_ok=True)
    run.save()  # before the output exists: an output without its state is not a run's
    with run.output.open("a", encoding="utf-8") as out:
        for pull in pulls_to_mine(repo, since, limit):
            if pull.number in run.pulls_done:
                continue
            history = PullHistory(repo, pull_commits(repo, pull))
            for comment in pull.get_review_comments():
                if since and comment.created_at < since:
                    run.skipped["written before --since"] += 1
                    continue
                record = mine_comment(history, pull, comment)
                if isinstance(record, str):
                    run.skipped[record] += 1
                    continue
                if record["_id"] not in run.written:  # else written by an earlier run
                    out.write(json.dumps(record) + "\n")
                    run.written.add(record["_id"])
            out.flush()
            os.fsync(out.fileno())
            run.pulls_read += 1
            if pull.state == "closed":  # an open one may yet get answers and comments
                run.pulls_done.append(pull.number)
            run.save()
            on_pull(run)
    return run
