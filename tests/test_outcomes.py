"""What became of posted suggestions: the bot answers three comments on a pull request over a real
git history, a push applies one as GitHub's "Commit suggestion" would, rewrites another and
leaves the third; closing settles it. Recorded in both job stores, counted in /metrics, reported
by `revisor report`, exported by `revisor mine --from-jobs`."""

import json
import logging
import os
import sqlite3
import subprocess
import sys
from contextlib import contextmanager

import pytest

from revisor.bot.github import PullRequestAPI, app_client
from revisor.bot.handlers import Handlers, ReviewContext, wanted
from revisor.bot.jobs import RedisJobStore, SQLiteJobStore, locked
from revisor.bot.metrics import REGISTRY
from revisor.bot.outcomes import PostedSuggestion, acceptance, applied_records, judge
from revisor.model.prompts import ZeroShot
from revisor.model.reviser import Reviser
from revisor.training.datasets import load_dataset
from tests import bot_scenario as s
from tests.conftest import ROOT
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
COMMENTS = [(301, 4, 4, "/revise use +="), (302, 9, 12, "/revise a list comprehension"),
            (303, 16, 16, "/revise what if it is empty?")]


@pytest.fixture(params=["sqlite", "redis"])
def ledger(request, tmp_path):
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        return RedisJobStore(url), {"REVISOR_REDIS_URL": url}
    return SQLiteJobStore(tmp_path / "jobs.db"), {"REVISOR_DATABASE": str(tmp_path / "jobs.db")}


def outcomes(store) -> float:
    return {o: REGISTRY.get_sample_value("revisor_suggestion_outcomes_total", {"outcome": o}) or 0
            for o in ("applied", "changed", "left")}


@contextmanager
def shop_pull(tmp_path, store):
    """A pull request adding app/shop.py over a real git history on the GitHub-like server, and
    `handle(event, payload)`, the bot with a scripted model (ANSWERS) and `store` as its ledger."""
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    base = commit(repo, "start", {"README.md": "# shop\n"})
    first_head = commit(repo, "shop", {"app/shop.py": SHOP})
    private, public = new_app_key()
    gh = FakeGitHub(s.APP_ID, public, s.INSTALLATION, s.REPO, git=repo)
    pull = gh.pulls[s.PR] = PullRequest(s.PR, first_head, "main", pull_files(repo, base, first_head),
                                        commits=[first_head])
    engine = FakeEngine(ANSWERS.__getitem__)
    handlers = Handlers(lambda strategy, adapter: Reviser(engine, ZeroShot()), "fake")
    gh.tokens.add(MINER_TOKEN)  # `revisor mine` reads the same pull request with it
    with ServerThread(create_github_app(gh)) as url:
        def handle(event: str, payload: dict) -> str:
            api = PullRequestAPI.open(app_client(url, s.APP_ID, private, s.INSTALLATION), s.REPO, s.PR)
            ctx = ReviewContext("d", event, payload, api, logging.LoggerAdapter(logging.getLogger()),
                                lambda key: locked(store, key), store)
            return handlers.handle(ctx)

        yield repo, base, first_head, pull, handle, url


def ask(pull, handle, comment_id: int, start: int, end: int, body: str, commit_id: str) -> None:
    """A reviewer's comment on lines `start`..`end` of app/shop.py at `commit_id`, answered."""
    payload = s.review_comment_payload(body, comment_id=comment_id)
    first = start if start != end else None
    payload["comment"].update(path="app/shop.py", start_line=first, line=end, commit_id=commit_id,
                              original_start_line=first, original_line=end, original_commit_id=commit_id,
                              subject_type="line", side="RIGHT", start_side="RIGHT")
    pull.review_comments.append(dict(payload["comment"]))
    assert handle("pull_request_review_comment", payload).startswith("replied with a suggestion")


def push(repo, base, pull, handle, files: dict, first_head: str) -> str:
    """Commit `files` to the pull request and deliver its `synchronize` event; the new head."""
    head = commit(repo, "review fixes", files)
    pull.head_sha, pull.commits = head, [first_head, head]
    pull.files = pull_files(repo, base, head)
    event = s.pull_request_payload("synchronize")
    event["pull_request"]["head"]["sha"] = head
    handle("pull_request", event)
    return head


def test_a_suggestion_applied_in_a_file_renamed_since_is_applied(tmp_path):
    store = SQLiteJobStore(tmp_path / "jobs.db")
    with shop_pull(tmp_path, store) as (repo, base, first_head, pull, handle, _):
        ask(pull, handle, 301, 4, 4, "/revise use +=", first_head)
        git(repo, "mv", "app/shop.py", "app/store.py")  # moved, and the suggestion committed
        push(repo, base, pull, handle, {"app/store.py": SHOP.replace("n = n + 1", "n += 1")}, first_head)
    assert [p.outcome for p in store.suggestions()] == ["applied"]


def test_applied_changed_and_left_after_a_push_and_on_close(ledger, tmp_path):
    store, store_env = ledger
    before = outcomes(store)
    with shop_pull(tmp_path, store) as (repo, base, first_head, pull, handle, url):
        for comment_id, start, end, body in COMMENTS:
            ask(pull, handle, comment_id, start, end, body, first_head)
        key = f"{s.REPO}#{s.PR}"
        posted = store.suggestions(key)
        assert [(p.start, p.end, p.outcome) for p in posted] == [(4, 4, "pending"), (9, 12, "pending"),
                                                                  (16, 16, "pending")]
        assert posted[0].suggestion == "        n += 1\n" and posted[0].comment == "use +="

        pushed = SHOP.replace("n = n + 1", "n += 1").replace(  # the first as suggested; the second otherwise
            "    result = []\n    for item in items:\n        result.append(item.name)\n    return result",
            "    return list(map(lambda item: item.name, items))")
        head = push(repo, base, pull, handle, {"app/shop.py": "import os\n\n" + pushed}, first_head)
        assert [p.outcome for p in store.suggestions(key)] == ["applied", "changed", "pending"]
        ask(pull, handle, 304, 6, 6, "/revise step by two", head)  # on the new head
        stale = s.pull_request_payload("synchronize")  # the first push's event, sent again
        stale["pull_request"]["head"]["sha"] = first_head
        handle("pull_request", stale)
        assert [p.outcome for p in store.suggestions(key)] == ["applied", "changed", "pending", "pending"]
        closed = {**s.pull_request_payload("closed")}
        closed["pull_request"]["head"]["sha"] = head
        assert wanted("pull_request", closed)
        assert handle("pull_request", closed) == "2 suggestion(s) left"
        assert [p.outcome for p in store.suggestions(key)] == ["applied", "changed", "left", "left"]
        assert handle("pull_request", closed) == "closed: no suggestion was pending"  # settled once
        mined = tmp_path / "mined.jsonl"
        subprocess.run([sys.executable, "-m", "revisor", "mine", "--repo", s.REPO, "--output", str(mined)],
                       cwd=ROOT, check=True, capture_output=True, timeout=60,
                       env={**os.environ, "GITHUB_API_URL": url, "GITHUB_TOKEN": MINER_TOKEN})
    after = outcomes(store)
    assert {o: after[o] - before[o] for o in after} == {"applied": 1, "changed": 1, "left": 2}

    def revisor(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "revisor", *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=60, env={**os.environ, **store_env})

    report = revisor("report")
    assert report.returncode == 0, report.stderr
    assert f"{s.REPO}        4        1        1        2        0       25.0%" in report.stdout
    rows = json.loads(revisor("report", "--format", "json").stdout)
    assert rows["model"] == [{"group": "fake", "posted": 4, "pending": 0, "applied": 1, "changed": 1,
                              "left": 2, "acceptance": 1 / 4}]
    exported = tmp_path / "applied.jsonl"
    result = revisor("mine", "--from-jobs", "--output", str(exported))
    assert result.returncode == 0 and "1 pair(s) from applied suggestions" in result.stdout, result.stderr
    [pair] = load_dataset(exported).examples
    assert pair.comment == "use +=" and "        n += 1" in pair.code_after.splitlines()
    [same] = [e for e in load_dataset(mined).examples if e.id.endswith("/301")]
    assert (pair.code_before, pair.code_after) == (same.code_before, same.code_after)  # context and all


def test_judge_reads_only_the_lines_at_their_place():
    posted = PostedSuggestion("k", "o/r", 1, "c", "a.py", 2, 3, "b\nc\n", "B\nC\n", "fix", "m", 0.0)
    before = ["a", "b", "c", "d"]
    assert judge(posted, before, ["a", "b", "c", "d", "B", "C"]) == "pending"  # elsewhere, not there
    assert judge(posted, before, ["x", "a", "B", "C", "d"]) == "applied"
    assert judge(posted, before, ["a", "B", "c", "d"]) == "changed"
    assert judge(posted, before, None) == "changed"
    deletion = PostedSuggestion("k", "o/r", 1, "c", "a.py", 2, 3, "b\nc\n", "", "drop them", "m", 0.0)
    assert judge(deletion, before, ["a", "d"]) == "applied"
    assert judge(deletion, before, ["a", "B", "d"]) == "changed"
    assert judge(deletion, before, ["a", "d", "b", "c"]) == "pending"  # moved, not deleted
    assert judge(posted, before, ["a", "d", "b", "c"]) == "pending"  # moved as they were
    assert judge(posted, before, ["a", "b", "c", "check()", "d"]) == "pending"  # a line added beside
    one = PostedSuggestion("k", "o/r", 1, "c", "a.py", 2, 2, "b\n", "B\n", "fix", "m", 0.0)
    assert judge(one, before, ["a", "x", "B", "y", "z", "d"]) == "changed"  # "B" in a rewrite, by chance
    guard = PostedSuggestion("k", "o/r", 1, "c", "a.py", 2, 3, "b\nc\n", "b\nc\nguard\n", "add a guard",
                             "m", 0.0)
    assert judge(guard, before, ["a", "b", "c", "guard", "d"]) == "applied"  # lines added, as suggested


def test_the_ledger_keeps_pull_requests_apart_and_counts_a_change_posted_twice_once(ledger, tmp_path):
    store, _ = ledger

    def posted(key, pull, at, outcome="pending"):
        return PostedSuggestion(key, "o/r", pull, "c", "a.py", 2, 2, "b\n", "B\n", "fix", "m", at, outcome)

    store.save_suggestion(posted("review-of-head", 1, 1.0))
    store.save_suggestion(posted("review-of-head", 2, 2.0))  # a second pull request with the same head
    assert [p.pull for p in store.suggestions()] == [1, 2]
    assert [p.pull for p in store.suggestions("o/r#2")] == [2]
    store.save_suggestion(posted("asked-again", 1, 3.0))  # the same change, asked for again
    store.save_suggestion(posted("review-of-head", 1, 1.0, "applied"))
    store.save_suggestion(posted("asked-again", 1, 3.0, "applied"))
    assert len(store.suggestions("o/r#1")) == 2
    [row] = acceptance(store.suggestions(), lambda p: p.repo)
    assert (row["posted"], row["applied"], row["pending"]) == (2, 1, 1)
    records, unprompted = applied_records(store.suggestions(), None)
    assert len(records) == 1 and unprompted == 0

    old = posted("from-an-earlier-version", 3, 4.0)  # a ledger keyed by the fingerprint alone
    if isinstance(store, SQLiteJobStore):
        with sqlite3.connect(store.path) as db:
            db.execute("INSERT INTO suggestions VALUES (?, ?, ?, ?)",
                       (old.key, old.pull_key, 4.0, old.to_json()))
        store = SQLiteJobStore(store.path)
    else:
        store.redis.hset("{revisor}:suggestions", old.key, old.to_json())
        store.redis.sadd("{revisor}:suggestions:o/r#3", old.key)
    assert [p.outcome for p in store.suggestions("o/r#3")] == ["pending"]
    store.save_suggestion(old.settled("changed"))
    assert [p.outcome for p in store.suggestions("o/r#3")] == ["changed"]
    assert len(store.suggestions()) == 4
