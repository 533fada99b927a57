"""GitHub through PyGithub: App or token auth, a pull request's diff, posting once.

Every call goes to the configured API URL (GitHub Enterprise Server works the same), and
secondary rate limits and 5xx answers are retried with backoff honouring `Retry-After` and
`x-ratelimit-reset` (PyGithub's `GithubRetry`).
"""

from __future__ import annotations

import base64
import logging
import re
from dataclasses import dataclass
from datetime import datetime

from github import Auth, Github, GithubException, GithubIntegration, GithubRetry
from github.PullRequest import PullRequest
from github.Repository import Repository
from urllib3.util import Retry

from revisor.bot.config import GitHubSettings
from revisor.bot.diff import Diff, parse_diff
from revisor.bot.metrics import GITHUB_ERRORS
from revisor.bot.placement import HEAD_MARKER, MARKER, within_limit
from revisor.model.errors import RevisorError
from revisor.model.prompts import inline_code

CONFIG_PATH = ".github/revisor.yml"
log = logging.getLogger("revisor.github")
RETRIED_STATUSES = (429, *range(500, 600))


class CountedRetry(GithubRetry):
    """PyGithub's retry policy, counting each error answer it retries."""

    def increment(self, method=None, url=None, response=None, *args, **kwargs):  # type: ignore[override]
        if response is not None:
            GITHUB_ERRORS.labels(str(response.status)).inc()
        return super().increment(method, url, response, *args, **kwargs)


def retry_policy(max_wait_s: float = 300) -> GithubRetry:
    """Reads are retried; writes are not: after a 502 or a timeout GitHub may have created the
    comment already. A failed write fails the job, and the job's next attempt looks for the
    comment's fingerprint before it writes again."""
    return CountedRetry(total=6, backoff_factor=0.5, max_rate_limit_wait=max_wait_s,
                        status_forcelist=list(RETRIED_STATUSES),
                        allowed_methods=Retry.DEFAULT_ALLOWED_METHODS)


def app_client(api_url: str, app_id: str, private_key: str, installation_id: int,
               max_wait_s: float = 300) -> Github:
    """A client acting as the App's installation (a JWT, then an installation token)."""
    auth = Auth.AppAuth(app_id, private_key).get_installation_auth(installation_id)
    return Github(auth=auth, base_url=api_url, retry=retry_policy(max_wait_s), seconds_between_requests=None,
                  seconds_between_writes=None)


def token_client(api_url: str, token: str, max_wait_s: float = 300) -> Github:
    return Github(auth=Auth.Token(token), base_url=api_url, retry=retry_policy(max_wait_s),
                  seconds_between_requests=None, seconds_between_writes=None)


def repository_client(github: GitHubSettings, full_name: str, max_wait_s: float) -> Github:
    """A client that can read `full_name`: GITHUB_TOKEN's, or else the App's installation on it."""
    if github.token:
        return token_client(github.api_url, github.token.get_secret_value(), max_wait_s)
    credentials = github.app_credentials()
    if credentials is None:
        raise RevisorError("set GITHUB_TOKEN (a token that can read the repository), or GITHUB_APP_ID "
                           "and GITHUB_APP_PRIVATE_KEY of an App installed on it")
    owner, _, name = full_name.partition("/")
    try:
        installation = app_integration(github).get_repo_installation(owner, name)
    except GithubException as error:
        raise RevisorError(f"the App is not installed on {full_name} ({error.status})") from None
    return app_client(github.api_url, *credentials, installation.id, max_wait_s)


def app_integration(github: GitHubSettings) -> GithubIntegration:
    """The App itself (its JWT), from GITHUB_APP_ID and its private key."""
    return GithubIntegration(auth=Auth.AppAuth(*github.require_app()), base_url=github.api_url,
                             retry=retry_policy())


def failed_deliveries(integration: GithubIntegration, since: datetime) -> list[dict]:
    """The App's webhook deliveries since `since` that no attempt delivered (no 2xx answer: the
    service was down, slow or failing), the latest attempt of each (`GET /app/hook/deliveries`)."""
    attempts, url = [], "/app/hook/deliveries?per_page=100"
    while url:
        headers, page = integration.requester.requestJsonAndCheck("GET", url)
        recent = [d for d in page if datetime.fromisoformat(d["delivered_at"]) >= since]
        attempts += recent
        following = re.search(r'<([^>]+)>;\s*rel="next"', headers.get("link", ""))
        url = following[1] if following and len(recent) == len(page) else None
    delivered = {d["guid"] for d in attempts if 200 <= d["status_code"] < 300}
    latest = {}
    for d in attempts:  # newest first: keep the first seen of each GUID
        latest.setdefault(d["guid"], d)
    return [d for guid, d in latest.items() if guid not in delivered]


def redeliver(integration: GithubIntegration, delivery_id: int) -> None:
    integration.requester.requestJsonAndCheck("POST", f"/app/hook/deliveries/{delivery_id}/attempts")


def file_patch_diff(files) -> str:
    """The unified diff of a pull request from its files' patches (binary files have none).

    A file whose name holds a control character is left out (and logged): written into a diff
    header, a newline in a name would start lines of its own."""
    parts = []
    for f in files:
        names = f"{f.filename}{f.previous_filename or ''}"
        if any(ord(c) < 32 or ord(c) == 127 for c in names):
            log.warning("not reviewed: the file name %r cannot be written in a diff", f.filename)
            continue
        old = "/dev/null" if f.status == "added" else f"a/{f.previous_filename or f.filename}"
        new = "/dev/null" if f.status == "removed" else f"b/{f.filename}"
        header = f"diff --git a/{f.previous_filename or f.filename} b/{f.filename}\n"
        if not f.patch:
            if f.status == "renamed" and not f.changes:  # moved as it was: nothing to review
                continue
            parts.append(f"{header}Binary files {old} and {new} differ\n")
            continue
        parts.append(f"{header}--- {old}\n+++ {new}\n{f.patch.rstrip(chr(10))}\n")
    return "".join(parts)


def file_lines(repo: Repository, path: str, ref: str) -> list[str] | None:
    """The lines of `path` at `ref`; None where it is not a file there (a directory, a symlink, a
    submodule). A file over 1 MB comes without its text from the contents endpoint: it is read
    from its blob."""
    try:
        content = repo.get_contents(path, ref=ref)
    except GithubException as error:
        if error.status == 404:
            return None
        raise
    if isinstance(content, list) or content.type != "file":
        return None
    if content.encoding == "base64":
        raw = content.decoded_content
    else:
        raw = base64.b64decode(repo.get_git_blob(content.sha).content)
    return raw.decode("utf-8", errors="replace").splitlines()


def react(requester, full_name: str, kind: str, comment_id: int, content: str = "eyes") -> None:
    """`POST /repos/{full_name}/{kind}/comments/{comment_id}/reactions`, `kind` being `pulls` for
    a review comment and `issues` for a conversation comment."""
    requester.requestJsonAndCheck("POST", f"/repos/{full_name}/{kind}/comments/{comment_id}/reactions",
                                  input={"content": content})


def lines_of(comment: dict) -> str:
    """`path:start-end` of a review comment about to be posted."""
    return f"{comment['path']}:{comment.get('start_line', comment['line'])}-{comment['line']}"


def app_bot_login(integration: GithubIntegration) -> str:
    """The login of the bot user an App writes as: `<its slug>[bot]`."""
    return f"{integration.get_app().slug}[bot]"


@dataclass
class PullRequestAPI:
    """The calls Revisor makes on one pull request."""

    repo: Repository
    pull: PullRequest
    bot_login: str | None = None
    """Whose comments are Revisor's: this App's bot user; None (a GitHub Actions run, whose token
    may be any bot's): any App's."""

    @classmethod
    def open(cls, client: Github, full_name: str, number: int,
             bot_login: str | None = None) -> PullRequestAPI:
        repo = client.get_repo(full_name)
        return cls(repo, repo.get_pull(number), bot_login)

    def ours(self, item) -> bool:
        """Written by Revisor, never by a person or another App: a hidden marker in their comments
        must not stop Revisor or change what it reviews."""
        user = item.user
        return user is not None and user.type == "Bot" and self.bot_login in (None, user.login)

    def diff(self) -> Diff:
        return parse_diff(file_patch_diff(self.pull.get_files()))

    def diff_at(self, commit: str | None) -> Diff:
        """The pull request's diff as it was at `commit` (a comment's `commit_id`, a review's head;
        None: the head as this job read it). Its lines number that commit's files, even when a push
        moves the head on while they are read: the pull request's files are the live head's."""
        commit = commit or self.pull.head.sha
        if commit == self.pull.head.sha:
            diff = self.diff()
            if self.repo.get_pull(self.pull.number).head.sha == commit:  # no push while reading
                return diff
        return self.compare_diff(self.pull.base.sha, commit)

    def compare_diff(self, base_sha: str, head_sha: str) -> Diff:
        return parse_diff(file_patch_diff(self.repo.compare(base_sha, head_sha).files))

    def file_lines(self, path: str, ref: str) -> list[str] | None:
        return file_lines(self.repo, path, ref)

    def lines_later(self, path: str, commit: str, head: str) -> tuple[str, list[str]] | None:
        """`path`'s name and lines at `head`: its new name if a commit since `commit` renamed it;
        None where it is gone."""
        lines = self.file_lines(path, head)
        if lines is not None:
            return path, lines
        try:
            files = self.repo.compare(commit, head).files
        except GithubException as error:
            if error.status == 404:  # the commit is gone (force-pushed away): so is what followed it
                return None
            raise
        renamed = [f.filename for f in files if f.status == "renamed" and f.previous_filename == path]
        lines = self.file_lines(renamed[0], head) if renamed else None
        return None if lines is None else (renamed[0], lines)

    def config_text(self) -> str | None:
        """`.github/revisor.yml` from the base branch, never from the pull request's head."""
        try:
            content = self.repo.get_contents(CONFIG_PATH, ref=self.pull.base.ref)
        except GithubException as error:
            if error.status == 404:
                return None
            raise
        try:
            return content.decoded_content.decode("utf-8")  # type: ignore[union-attr]
        except UnicodeDecodeError:
            raise RevisorError(f"{CONFIG_PATH} is not UTF-8 text: save it as UTF-8") from None

    def posted_fingerprints(self) -> set[str]:
        """Fingerprints hidden in what Revisor already posted on this pull request."""
        bodies = [c.body for c in self.pull.get_review_comments() if self.ours(c)]
        bodies += [r.body for r in self.pull.get_reviews() if self.ours(r)]
        bodies += [c.body for c in self.pull.get_issue_comments() if self.ours(c)]
        return {m["fingerprint"] for body in bodies if body for m in MARKER.finditer(body)}

    def last_reviewed_head(self) -> str | None:
        """The head commit of Revisor's latest review of this pull request, if any."""
        heads = [m["sha"] for r in self.pull.get_reviews() if r.body and self.ours(r)
                 for m in HEAD_MARKER.finditer(r.body)]
        return heads[-1] if heads else None

    def reply(self, comment_id: int, body: str) -> None:
        self.pull.create_review_comment_reply(comment_id, body)

    def comment(self, body: str) -> None:
        """A comment in the pull request's conversation."""
        self.pull.create_issue_comment(body)

    def react(self, event: str, comment_id: int, content: str = "eyes") -> None:
        """A reaction on a review comment or a conversation comment (GitHub answers 200 when it is
        there already)."""
        kind = "pulls" if event == "pull_request_review_comment" else "issues"
        react(self.repo.requester, self.repo.full_name, kind, comment_id, content)

    def review(self, head_sha: str, body: str, comments: list[dict]) -> bool:
        """One review of COMMENT kind; False when GitHub refused its comments (422) and they went
        into the review's body instead (text, not suggestions one can commit), so none is lost."""
        commit = self.repo.get_commit(head_sha)
        try:
            self.pull.create_review(commit=commit, body=body, event="COMMENT", comments=comments)
            return True
        except GithubException as error:
            if error.status != 422 or not comments:
                raise
            GITHUB_ERRORS.labels("422").inc()
            notes = [f"{inline_code(lines_of(c))}\n{c['body']}" for c in comments]
            self.pull.create_review(commit=commit, body=within_limit(body, notes), event="COMMENT")
            return False
