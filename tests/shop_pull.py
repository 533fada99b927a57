"""The bot on a pull request over a real git history: a pull request adding app/shop.py on the
GitHub-like server, reviewers' comments the bot answers with a scripted model, and pushes it
settles its suggestions' outcomes on (tests/test_outcomes.py, benchmarks/hard_histories.py)."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from revisor.bot.github import PullRequestAPI, app_client
from revisor.bot.handlers import Handlers, ReviewContext
from revisor.bot.jobs import JobStore, locked
from revisor.model.prompts import ZeroShot
from revisor.model.reviser import Reviser
from tests import bot_scenario as s
from tests.fakes import FakeEngine
from tests.github_server import FakeGitHub, PullRequest, ServerThread, create_github_app, git, new_app_key
from tests.repo_history import commit, pull_files

SHOP = """def count(items):
    n = 0
    for item in items:
        n = n + 1
    return n


def names(items):
    result = []
    for item in items:
        result.append(item.name)
    return result


def first(items):
    return items[0]
"""
ANSWERS = {  # the model's answer for the code under each comment
    "        n = n + 1\n": "```python\nn += 1\n```",
    "    result = []\n    for item in items:\n        result.append(item.name)\n    return result\n":
        "```python\nreturn [item.name for item in items]\n```",
    "    return items[0]\n": "```python\nreturn items[0] if items else None\n```",
    "        n += 1\n": "```python\nn += 2\n```",
}
MINER_TOKEN = "ghp_" + "o" * 36
"""A token `revisor mine` reads the same pull request with."""


@dataclass
class ShopPull:
    repo: Path
    base: str
    first_head: str
    pull: PullRequest
    url: str
    handlers: Handlers
    store: JobStore
    private_key: str

    def handle(self, event: str, payload: dict) -> str:
        """The bot's answer to one event, as a worker runs it."""
        client = app_client(self.url, s.APP_ID, self.private_key, s.INSTALLATION)
        api = PullRequestAPI.open(client, s.REPO, s.PR)
        ctx = ReviewContext("d", event, payload, api, logging.LoggerAdapter(logging.getLogger()),
                            lambda key: locked(self.store, key), self.store)
        return self.handlers.handle(ctx)

    def ask(self, comment_id: int, start: int, end: int, body: str, commit_id: str | None = None) -> None:
        """A reviewer's comment on lines `start`..`end` of app/shop.py at `commit_id` (default: the
        head), answered with a suggestion."""
        commit_id = commit_id or self.pull.head_sha
        payload = s.review_comment_payload(body, comment_id=comment_id)
        first = start if start != end else None
        payload["comment"].update(path="app/shop.py", start_line=first, line=end, commit_id=commit_id,
                                  original_start_line=first, original_line=end, original_commit_id=commit_id,
                                  subject_type="line", side="RIGHT", start_side="RIGHT")
        self.pull.review_comments.append(dict(payload["comment"]))
        assert self.handle("pull_request_review_comment", payload).startswith("replied with a suggestion")

    def push(self, files: dict[str, str | None], moves: dict[str, str] | None = None,
             force: bool = False) -> str:
        """Commit `files` (and renames) to the pull request, or with `force` to a history rewritten
        from the base (a force-push), and deliver its `synchronize` event; the new head."""
        if force:
            git(self.repo, "checkout", "-q", "-B", f"rewritten-{len(self.pull.commits)}", self.base)
        head = commit(self.repo, "review fixes", files, moves)
        self.pull.head_sha = head
        self.pull.commits = [head] if force else [*self.pull.commits, head]
        self.pull.files = pull_files(self.repo, self.base, head)
        self.handle("pull_request", self.event("synchronize"))
        return head

    def close(self) -> str:
        return self.handle("pull_request", self.event("closed"))

    def event(self, action: str) -> dict:
        payload = s.pull_request_payload(action)
        payload["pull_request"]["head"]["sha"] = self.pull.head_sha
        return payload


@contextmanager
def shop_pull(root: Path, store: JobStore, shop: str = SHOP) -> Iterator[ShopPull]:
    """The pull request adding app/shop.py (`shop`), the bot answering with the scripted model
    (ANSWERS) and `store` as its ledger."""
    repo = root / "repo"
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    base = commit(repo, "start", {"README.md": "# shop\n"})
    first_head = commit(repo, "shop", {"app/shop.py": shop})
    private, public = new_app_key()
    gh = FakeGitHub(s.APP_ID, public, s.INSTALLATION, s.REPO, git=repo, tokens={MINER_TOKEN})
    pull = gh.pulls[s.PR] = PullRequest(s.PR, first_head, "main", pull_files(repo, base, first_head),
                                        commits=[first_head])
    engine = FakeEngine(ANSWERS.__getitem__)
    handlers = Handlers(lambda strategy, adapter: Reviser(engine, ZeroShot()), "fake")
    with ServerThread(create_github_app(gh)) as url:
        yield ShopPull(repo, base, first_head, pull, url, handlers, store, private)
