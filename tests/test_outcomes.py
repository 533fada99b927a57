"""What became of posted suggestions: the bot answers three comments on a pull request over a real
git history, a push applies one as GitHub's "Commit suggestion" would, rewrites another and
leaves the third; closing settles it. Recorded in both job stores, counted in /metrics, reported
by `revisor report`, exported by `revisor mine --from-jobs`."""

import json
import os
import sqlite3
import subprocess
import sys

import pytest

from revisor.bot.handlers import wanted
from revisor.bot.jobs import RedisJobStore, SQLiteJobStore
from revisor.bot.metrics import REGISTRY
from revisor.bot.outcomes import PostedSuggestion, acceptance, applied_records, judge, settle
from revisor.training.datasets import load_dataset
from tests import bot_scenario as s
from tests.conftest import ROOT
from tests.shop_pull import MINER_TOKEN, SHOP, shop_pull

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


def test_a_suggestion_applied_in_a_file_renamed_since_is_applied(tmp_path):
    store = SQLiteJobStore(tmp_path / "jobs.db")
    with shop_pull(tmp_path, store) as shop:
        shop.ask(301, 4, 4, "/revise use +=")
        shop.push({"app/store.py": SHOP.replace("n = n + 1", "n += 1")},  # moved, and the suggestion
                  moves={"app/shop.py": "app/store.py"})                  # committed
    assert [p.outcome for p in store.suggestions()] == ["applied"]


def test_applied_changed_and_left_after_a_push_and_on_close(ledger, tmp_path):
    store, store_env = ledger
    before = outcomes(store)
    with shop_pull(tmp_path, store) as shop:
        for comment_id, start, end, body in COMMENTS:
            shop.ask(comment_id, start, end, body)
        key = f"{s.REPO}#{s.PR}"
        posted = store.suggestions(key)
        assert [(p.start, p.end, p.outcome) for p in posted] == [(4, 4, "pending"), (9, 12, "pending"),
                                                                  (16, 16, "pending")]
        assert posted[0].suggestion == "        n += 1\n" and posted[0].comment == "use +="

        pushed = SHOP.replace("n = n + 1", "n += 1").replace(  # the first as suggested; the second otherwise
            "    result = []\n    for item in items:\n        result.append(item.name)\n    return result",
            "    return list(map(lambda item: item.name, items))")
        head = shop.push({"app/shop.py": "import os\n\n" + pushed})
        assert [p.outcome for p in store.suggestions(key)] == ["applied", "changed", "pending"]
        shop.ask(304, 6, 6, "/revise step by two", head)  # on the new head
        stale = s.pull_request_payload("synchronize")  # the first push's event, sent again
        stale["pull_request"]["head"]["sha"] = shop.first_head
        shop.handle("pull_request", stale)
        assert [p.outcome for p in store.suggestions(key)] == ["applied", "changed", "pending", "pending"]
        assert wanted("pull_request", shop.event("closed"))
        assert shop.close() == "2 suggestion(s) left"
        assert [p.outcome for p in store.suggestions(key)] == ["applied", "changed", "left", "left"]
        assert shop.close() == "closed: no suggestion was pending"  # settled once
        mined = tmp_path / "mined.jsonl"
        subprocess.run([sys.executable, "-m", "revisor", "mine", "--repo", s.REPO, "--output", str(mined)],
                       cwd=ROOT, check=True, capture_output=True, timeout=60,
                       env={**os.environ, "GITHUB_API_URL": shop.url, "GITHUB_TOKEN": MINER_TOKEN})
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


def test_a_pending_suggestion_follows_its_lines_and_is_judged_where_they_are():
    first = ["def f():", "    x = 1", "    return x", "", "", "def g():", "    y = 2", "    z = 3",
             "    return y + z"]
    files = {("a.py", "c1"): first, ("a.py", "h1"): ["import os", *first[:2], "    log(x)", *first[2:]]}
    files[("b.py", "h2")] = [line.replace("x = 1", "x = 10") for line in files[("a.py", "h1")]]
    files[("b.py", "h3")] = [*first[5:], "", "", *first[:3]]  # f() cut and pasted below g()

    def lines_at(path, ref):
        return files.get((path, ref))

    def lines_later(path, commit, head):
        return next(((p, lines) for (p, ref), lines in files.items() if ref == head), None)

    posted = PostedSuggestion("k", "o/r", 1, "c1", "a.py", 2, 2, "    x = 1\n", "    x = 10\n", "ten", "m",
                              0.0)
    [anchored] = settle([posted], lines_at, lines_later, "h1", closed=False)  # a line above, one beside
    assert (anchored.outcome, anchored.commit, anchored.path, anchored.start, anchored.end) == (
        "pending", "h1", "a.py", 3, 3)
    [applied] = settle([anchored], lines_at, lines_later, "h2", closed=False)  # renamed, and applied
    assert applied.outcome == "applied"
    assert judge(posted, files[("a.py", "c1")], files[("b.py", "h2")]) == "changed"  # judged from afar

    files[("a.py", "h4")] = [*first[:2], "    log(x)", *first[2:]]  # a line beside, nothing above
    files[("a.py", "h5")] = [line.replace("x = 1", "x = 10") for line in files[("a.py", "h4")]]
    [beside] = settle([posted], lines_at, lines_later, "h4", closed=False)
    assert (beside.commit, beside.start, beside.end) == ("h4", 2, 2)
    assert [p.outcome for p in settle([beside], lines_at, lines_later, "h5", closed=False)] == ["applied"]

    [moved] = settle([posted], lines_at, lines_later, "h3", closed=False)
    assert (moved.outcome, moved.path, moved.start, moved.end) == ("pending", "b.py", 8, 8)
    assert settle([moved], lines_at, lines_later, "h3", closed=False) == []  # nothing new at h3
