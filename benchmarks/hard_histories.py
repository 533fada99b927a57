"""Mining and outcomes on hard histories, through the CLI, each judged against what it states.

    python -m benchmarks.hard_histories [--seed 0] [--kills 3]

Every history is a real git repository served by the tests' GitHub-like server, which answers as
GitHub documents (pages, a pull request's first 250 commits, a commit's first 3,000 files, files
over 1 MB without their text, symlinks and submodules as such).

Mining: each history states the pairs `revisor mine` must write (the code before and after, as
CodeReviewer hunks: the lines the answering commit changed and three around) and the comments it
must skip, with the reason. It is mined once straight through, and once more into a new output,
killed at random points (SIGKILL, up to --kills times) and resumed until done: both runs must
write exactly the stated pairs, and the straight run must skip exactly the stated comments.

Outcomes: in each, the bot answers a reviewer's comment with a suggestion, then pushes apply it,
move it, rename the file, force-push, close the pull request...; `revisor report` must count
exactly the stated outcome.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from revisor.bot.jobs import SQLiteJobStore
from revisor.training.datasets import load_dataset
from tests.github_server import FakeGitHub, PullRequest, ServerThread, create_github_app, git, new_app_key
from tests.repo_history import APP_ID, INSTALLATION, REPO, comment, commit
from tests.shop_pull import SHOP, shop_pull

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "ghp_" + "h" * 36
WRITTEN = "2026-01-01T00:00:00Z"
"""When the comments were written: before the commits that answer them, which are made now."""
MINER_ENV = {"GITHUB_TOKEN": TOKEN, "GITHUB_APP_ID": ""}
"""`revisor mine` reads the GitHub-like server with this token, never an App's credentials."""


@dataclass
class History:
    """A repository's pull requests, and what mining them must give."""

    name: str
    repo: Path
    pulls: list[PullRequest]
    pairs: dict[int, tuple[str, str]] = field(default_factory=dict)
    """Comment id -> the code before and after that the pair must hold."""
    skips: dict[int, str] = field(default_factory=dict)
    """Comment id -> why it makes no pair."""
    later: Callable[[], None] | None = None
    """What happens after a first run (an open pull request answered): mined again then."""


def numbered(name: str, count: int, spaced: bool = False) -> list[str]:
    return [f"{name}_{n}{' = ' if spaced else '='}{n}" for n in range(count)]


def text(lines: list[str]) -> str:
    return "\n".join(lines) + "\n"


def hunk(lines: list[str], first: int, last: int) -> str:
    """Lines `first`..`last` (1-based) with three lines around: a pair's code, as stated."""
    return "\n".join(lines[max(0, first - 4):last + 3]).strip("\n")


def new_repo(root: Path, name: str) -> Path:
    repo = root / name
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    return repo


def pull(commits: list[str], base: str, comments: list[dict], state: str = "closed") -> PullRequest:
    made = PullRequest(1, commits[-1], "main", [], commits=commits, base_sha=base, state=state)
    made.review_comments = comments
    return made


def answered(root: Path) -> History:
    """Two comments: one answered, one never."""
    repo = new_repo(root, "answered")
    rates = numbered("RATE", 12)
    base = commit(repo, "start", {"README.md": "# rates\n"})
    first = commit(repo, "rates", {"app/rates.py": text(rates)})
    spaced = [*rates[:4], "RATE_4 = 4", "RATE_5 = 5", *rates[6:]]
    second = commit(repo, "spaces", {"app/rates.py": text(spaced)})
    return History("answered, and never answered", repo, [pull([first, second], base, [
        comment(1, 1, "app/rates.py", 6, "spaces around =", first, WRITTEN, start=5),
        comment(1, 2, "app/rates.py", 11, "rename this", first, WRITTEN)])],
        pairs={1: (hunk(rates, 5, 6), hunk(spaced, 5, 6))}, skips={2: "never followed by a change"})


def drafted_on_an_older_head(root: Path) -> History:
    """The author's next commit changed the lines before the comment was written."""
    repo = new_repo(root, "older-head")
    base = commit(repo, "start", {"README.md": "# tax\n"})
    first = commit(repo, "tax", {"app/tax.py": "RATE=0.2\nLIMIT=10\n"}, when="2025-12-01T10:00:00Z")
    second = commit(repo, "tax spaces", {"app/tax.py": "RATE = 0.2\nLIMIT=10\n"}, when="2025-12-01T11:00:00Z")
    return History("a review drafted on an older head", repo, [pull([first, second], base, [
        comment(1, 1, "app/tax.py", 1, "spaces around =", first, "2025-12-01T12:00:00Z")])],
        skips={1: "its lines changed in a commit made before it (a review begun on an older commit)"})


def merged_base(root: Path) -> History:
    """A merge of the base branch changed the lines; the author's later commit answered."""
    repo = new_repo(root, "merge")
    base = commit(repo, "rates", {"app/rates.py": "RATE=1\nCAP=2\nFLOOR=0\n"})
    git(repo, "checkout", "-q", "-b", "feature")
    first = commit(repo, "ceiling", {"app/rates.py": "RATE=1\nCAP=2\nFLOOR=0\nCEIL=9\n"})
    git(repo, "checkout", "-q", "main")
    commit(repo, "rate spaces", {"app/rates.py": "RATE = 1\nCAP=2\nFLOOR=0\n"})
    git(repo, "checkout", "-q", "feature")
    git(repo, "-c", "user.name=Dev", "-c", "user.email=dev@example.com", "merge", "-q", "--no-edit", "main")
    merge = git(repo, "rev-parse", "HEAD").strip()
    return History("a merge of the base branch", repo, [pull([first, merge], base, [
        comment(1, 1, "app/rates.py", 1, "spaces around =", first, WRITTEN)])],
        skips={1: "its lines changed in a merge, not in answer"})


def moved(root: Path) -> History:
    """The commented function cut and pasted below another, unchanged."""
    repo = new_repo(root, "moved")
    short, long_ = ["def a():", "    return 1"], ["def b():", "    x = 2", "    y = 3", "    return x + y"]
    base = commit(repo, "start", {"README.md": "# moved\n"})
    first = commit(repo, "functions", {"app/f.py": text([*short, "", "", *long_])})
    second = commit(repo, "a() below b()", {"app/f.py": text([*long_, "", "", *short])})
    return History("code moved, unchanged", repo, [pull([first, second], base, [
        comment(1, 1, "app/f.py", 2, "return 2 here", first, WRITTEN, start=1)])],
        skips={1: "its lines moved elsewhere unchanged, not answered"})


def copied(root: Path) -> History:
    """A copy of the file, changed; then the original answered."""
    repo = new_repo(root, "copied")
    rates = numbered("RATE", 12)
    base = commit(repo, "start", {"app/rates.py": text(rates)})
    first = commit(repo, "cap", {"app/rates.py": text([*rates, "CAP=2"])})
    grown = ["# rates", *rates, "CAP=2"]
    copy = commit(repo, "a copy for v2, changed; the original grows", {
        "app/rates.py": text(grown), "app/rates_v2.py": text([*rates, "CAP = 20"])})
    answer = [*grown[:-1], "CAP = 2"]
    last = commit(repo, "spaces", {"app/rates.py": text(answer)})
    return History("a copy, changed, beside the original", repo, [pull([first, copy, last], base, [
        comment(1, 1, "app/rates.py", 13, "spaces around =", first, WRITTEN)])],
        pairs={1: (hunk(grown, 14, 14), hunk(answer, 14, 14))})


def renamed(root: Path) -> History:
    """The file renamed, then the lines answered under the new name."""
    repo = new_repo(root, "renamed")
    rates = numbered("RATE", 10)
    base = commit(repo, "start", {"README.md": "# rates\n"})
    first = commit(repo, "rates", {"app/rates.py": text(rates)})
    moved_ = commit(repo, "rename", {}, moves={"app/rates.py": "app/tariffs.py"})
    answer = [*rates[:2], "RATE_2 = 2", *rates[3:]]
    last = commit(repo, "spaces", {"app/tariffs.py": text(answer)})
    return History("a rename, then the answer", repo, [pull([first, moved_, last], base, [
        comment(1, 1, "app/rates.py", 3, "spaces around =", first, WRITTEN)])],
        pairs={1: (hunk(rates, 3, 3), hunk(answer, 3, 3))})


def force_pushed(root: Path) -> History:
    """A force-push dropped the commented commit."""
    repo = new_repo(root, "force-push")
    base = commit(repo, "start", {"README.md": "# fees\n"})
    dropped = commit(repo, "fees", {"app/fees.py": "FEE=1\n"})
    git(repo, "checkout", "-q", "-b", "rewritten", base)
    kept = commit(repo, "fees, again", {"app/fees.py": "FEE = 1\n"})
    return History("a force-push that dropped the commit", repo, [pull([kept], base, [
        comment(1, 1, "app/fees.py", 1, "spaces around =", dropped, WRITTEN)])],
        skips={1: "outdated (its commit left the pull request)"})


def large_file(root: Path) -> History:
    """A 2 MB file: GitHub's contents endpoint gives no text over 1 MB."""
    repo = new_repo(root, "large")
    lines = numbered("value", 120_000)
    base = commit(repo, "start", {"README.md": "# data\n"})
    first = commit(repo, "data", {"app/data.py": text(lines)})
    answer = [*lines[:60_000], "value_60000 = 60000", *lines[60_001:]]
    last = commit(repo, "spaces", {"app/data.py": text(answer)})
    return History("a file over 1 MB", repo, [pull([first, last], base, [
        comment(1, 1, "app/data.py", 60_001, "spaces around =", first, WRITTEN)])],
        pairs={1: (hunk(lines, 60_001, 60_001), hunk(answer, 60_001, 60_001))})


def links(root: Path) -> History:
    """Comments on a symlink and on a submodule."""
    repo = new_repo(root, "links")
    base = commit(repo, "start", {"README.md": "# links\n"})
    (repo / "app").mkdir()
    (repo / "app" / "settings.py").symlink_to("../../elsewhere/settings.py")
    git(repo, "add", "app/settings.py")
    git(repo, "update-index", "--add", "--cacheinfo", f"160000,{base},vendor/sdk.js")
    first = commit(repo, "a symlink and a submodule", {"app/main.py": "run()\n"})
    return History("a symlink and a submodule", repo, [pull([first], base, [
        comment(1, 1, "app/settings.py", 1, "point at the local one", first, WRITTEN),
        comment(1, 2, "vendor/sdk.js", 1, "pin a release", first, WRITTEN)])],
        skips={1: "not a file at its commit (a symlink or a submodule)",
               2: "not a file at its commit (a symlink or a submodule)"})


def answered_later(root: Path) -> History:
    """An open pull request mined before its author answered, and again after."""
    repo = new_repo(root, "later")
    base = commit(repo, "start", {"README.md": "# config\n"})
    first = commit(repo, "config", {"app/config.py": "TIMEOUT=30\nRETRIES=3\n"})
    opened = pull([first], base, [comment(1, 1, "app/config.py", 1, "spaces around =", first, WRITTEN)],
                  state="open")

    def answer() -> None:
        opened.commits.append(commit(repo, "spaces", {"app/config.py": "TIMEOUT = 30\nRETRIES=3\n"}))
        opened.head_sha = opened.commits[-1]

    return History("answered after it was first mined", repo, [opened],
                   pairs={1: ("TIMEOUT=30\nRETRIES=3", "TIMEOUT = 30\nRETRIES=3")}, later=answer)


def function_below(root: Path) -> History:
    """A new function added right below the lines, then the lines answered."""
    repo = new_repo(root, "below")
    load = ["def load(path):", "    data = read(path)", "    return data"]
    base = commit(repo, "start", {"README.md": "# io\n"})
    first = commit(repo, "load", {"app/io.py": text(load)})
    grown = [*load, "", "", "def unrelated():", "    return 1"]
    other = commit(repo, "another function", {"app/io.py": text(grown)})
    answer = [load[0], "    return read(path)", *grown[3:]]
    last = commit(repo, "inline", {"app/io.py": text(answer)})
    return History("a new function right below, then the answer", repo, [pull([first, other, last], base, [
        comment(1, 1, "app/io.py", 3, "return it directly", first, WRITTEN, start=2)])],
        pairs={1: (hunk(grown, 2, 3), hunk(answer, 2, 2))})


def long_history(root: Path) -> History:
    """Answers beyond a pull request's first 250 commits and beyond a commit's first 3,000 files."""
    repo = new_repo(root, "long")
    rates, fees = numbered("RATE", 8), numbered("FEE", 8)
    base = commit(repo, "start", {"README.md": "# long\n"})
    first = commit(repo, "rates and fees", {"app/rates.py": text(rates), "app/fees.py": text(fees)})
    shas = [first] + [commit(repo, f"note {n}", {"notes.md": f"{n}\n"}) for n in range(250)]
    spaced_rates = [*rates[:3], "RATE_3 = 3", *rates[4:]]
    shas.append(commit(repo, "rates spaced", {"app/rates.py": text(spaced_rates)}))  # the 252nd
    generated = {f"a-gen/f{n:04}.txt": f"{n}\n" for n in range(3000)}  # listed before app/fees.py
    spaced_fees = [*fees[:3], "FEE_3 = 3", *fees[4:]]
    shas.append(commit(repo, "generated; fees spaced", {**generated, "app/fees.py": text(spaced_fees)}))
    return History("252 commits, and a commit of 3,001 files", repo, [pull(shas, base, [
        comment(1, 1, "app/rates.py", 4, "spaces around =", first, WRITTEN),
        comment(1, 2, "app/fees.py", 4, "spaces around =", first, WRITTEN)])],
        pairs={1: (hunk(rates, 4, 4), hunk(spaced_rates, 4, 4)),
               2: (hunk(fees, 4, 4), hunk(spaced_fees, 4, 4))})


MINING = (answered, drafted_on_an_older_head, merged_base, moved, copied, renamed, force_pushed,
          large_file, links, answered_later, function_below, long_history)


def mine_cli(url: str, output: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "revisor", "mine", "--repo", REPO, "--output", str(output)]
    return subprocess.Popen(command, cwd=ROOT, env={**os.environ, "GITHUB_API_URL": url, **MINER_ENV},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def mined(output: Path) -> dict[int, tuple[str, str]]:
    """Comment id -> the pair's code before and after, as `revisor train` reads them."""
    examples = load_dataset(output).examples if output.exists() else []
    return {int(e.id.rsplit("/", 1)[1]): (e.code_before, e.code_after) for e in examples}


def finish(process: subprocess.Popen) -> str:
    out, err = process.communicate(timeout=600)
    if process.returncode:
        raise SystemExit(f"revisor mine failed: {err.strip()}")
    return out


def run_straight(history: History, url: str, output: Path) -> tuple[dict, Counter]:
    """Mined once (twice where the history goes on after a first run); the pairs and the last
    run's skipped comments by reason."""
    out = finish(mine_cli(url, output))
    if history.later:
        history.later()
        out = finish(mine_cli(url, output))
    skipped = Counter({reason: int(n) for n, reason in re.findall(r"^skipped (\d+): (.+)$", out, re.M)})
    return mined(output), skipped


def run_killed(history: History, gh: FakeGitHub, url: str, output: Path, rng: random.Random,
               kills: int) -> tuple[dict, int]:
    """Mined with every request slowed, killed at random points and resumed until a run ends; the
    pairs and how many runs were killed."""
    gh.slow_paths[""] = 0.1
    killed = 0
    try:
        for attempt in range(kills + 1):
            process = mine_cli(url, output)
            if attempt < kills:
                try:
                    process.wait(timeout=rng.uniform(0.2, 1.5))
                except subprocess.TimeoutExpired:
                    process.send_signal(signal.SIGKILL)
                    process.wait()
                    killed += 1
                    continue
            finish(process)
            break
        if history.later:
            history.later()
            finish(mine_cli(url, output))
    finally:
        gh.slow_paths.clear()
    return mined(output), killed


def mining_row(build: Callable[[Path], History], root: Path, rng: random.Random, kills: int) -> dict:
    straight = build(root / "straight")
    killed_history = build(root / "killed")
    results = []
    for history, killed in ((straight, False), (killed_history, True)):
        gh = FakeGitHub(APP_ID, new_app_key()[1], INSTALLATION, REPO, git=history.repo, per_page_cap=100,
                        tokens={TOKEN})
        gh.pulls = {p.number: p for p in history.pulls}
        with ServerThread(create_github_app(gh)) as url:
            output = history.repo.parent / "pairs.jsonl"
            if killed:
                results.append(run_killed(history, gh, url, output, rng, kills))
            else:
                results.append(run_straight(history, url, output))
    (pairs, skipped), (resumed, kill_count) = results
    expected, reasons = straight.pairs, Counter(straight.skips.values())
    right_pairs = sum(1 for k, v in pairs.items() if expected.get(k) == v)
    missed_skips = sum((reasons - skipped).values())
    return {"history": straight.name, "expected": len(expected) + len(straight.skips),
            "found": right_pairs + len(straight.skips) - missed_skips,
            "wrong": len(pairs) - right_pairs + sum((skipped - reasons).values()),
            "missed": sum(1 for k in expected if k not in pairs) + missed_skips,
            "killed": kill_count, "resumed the same": resumed == pairs}


@dataclass
class OutcomeCase:
    """Pushes after a suggestion was posted on app/shop.py line 4 (`n = n + 1` -> `n += 1`)."""

    name: str
    steps: Callable[..., None]
    expected: dict[str, int]


APPLIED = SHOP.replace("n = n + 1", "n += 1")
COUNT = SHOP[:SHOP.index("\n\n\ndef names")]
REST = SHOP[SHOP.index("def names"):]


def applied(shop) -> None:
    shop.push({"app/shop.py": APPLIED})


def applied_then_moved(shop) -> None:
    shop.push({"app/shop.py": APPLIED})
    moved_count = APPLIED[:APPLIED.index("\n\n\ndef names")]
    shop.push({"app/shop.py": REST + "\n\n" + moved_count + "\n"})


def original_moved(shop) -> None:
    shop.push({"app/shop.py": REST + "\n\n" + COUNT + "\n"})
    shop.close()


def changed(shop) -> None:
    shop.push({"app/shop.py": SHOP.replace("n = n + 1", "n = n + 2")})


def beside_then_applied(shop) -> None:
    shop.push({"app/shop.py": SHOP.replace("        n = n + 1\n", "        n = n + 1\n        seen(item)\n")})
    shop.push({"app/shop.py": APPLIED.replace("        n += 1\n", "        n += 1\n        seen(item)\n")})


def renamed_then_applied(shop) -> None:
    shop.push({}, moves={"app/shop.py": "app/store.py"})
    shop.push({"app/store.py": APPLIED})


def force_pushed_applied(shop) -> None:
    shop.push({"app/shop.py": APPLIED}, force=True)


def closed_untouched(shop) -> None:
    shop.close()


def file_deleted(shop) -> None:
    shop.push({"app/shop.py": None, "app/other.py": "pass\n"})


def asked_twice(shop) -> None:
    shop.ask(302, 4, 4, "/revise use += please")
    shop.push({"app/shop.py": APPLIED})


NONE = {"applied": 0, "changed": 0, "left": 0, "pending": 0}
OUTCOMES = (
    OutcomeCase("applied as suggested", applied, NONE | {"applied": 1}),
    OutcomeCase("applied, then moved", applied_then_moved, NONE | {"applied": 1}),
    OutcomeCase("the lines moved as they were, then closed", original_moved, NONE | {"left": 1}),
    OutcomeCase("changed otherwise", changed, NONE | {"changed": 1}),
    OutcomeCase("a line added beside, then applied", beside_then_applied, NONE | {"applied": 1}),
    OutcomeCase("the file renamed, then applied", renamed_then_applied, NONE | {"applied": 1}),
    OutcomeCase("force-pushed with it applied", force_pushed_applied, NONE | {"applied": 1}),
    OutcomeCase("closed untouched", closed_untouched, NONE | {"left": 1}),
    OutcomeCase("the file deleted", file_deleted, NONE | {"changed": 1}),
    OutcomeCase("asked twice, applied once", asked_twice, NONE | {"applied": 1}),
)


def outcome_row(case: OutcomeCase, root: Path) -> dict:
    root.mkdir(parents=True)
    database = root / "jobs.db"
    with shop_pull(root, SQLiteJobStore(database)) as shop:
        shop.ask(301, 4, 4, "/revise use +=")
        case.steps(shop)
    report = subprocess.run([sys.executable, "-m", "revisor", "report", "--format", "json"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "REVISOR_DATABASE": str(database), "REVISOR_REDIS_URL": ""})
    if report.returncode:
        raise SystemExit(f"revisor report failed: {report.stderr.strip()}")
    [row] = json.loads(report.stdout)["repository"]
    counted = {k: row[k] for k in NONE}

    def said(counts: dict[str, int]) -> str:
        return ", ".join(f"{outcome} {n}" for outcome, n in counts.items() if n)

    return {"case": case.name, "expected": said(case.expected), "counted": said(counted),
            "posted": row["posted"], "right": counted == case.expected and row["posted"] == 1}


def table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="Where the kills fall.")
    parser.add_argument("--kills", type=int, default=3, help="Kills at most, per history.")
    args = parser.parse_args()
    if args.kills < 0:
        parser.error("--kills must be 0 or more")
    rng = random.Random(args.seed)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        mining = [mining_row(build, root / build.__name__, rng, args.kills) for build in MINING]
        columns = ["history", "expected", "found", "wrong", "missed", "killed", "resumed the same"]
        print(table(mining, columns))
        totals = {k: sum(row[k] for row in mining) for k in ("expected", "found", "wrong", "missed")}
        same = sum(row["resumed the same"] for row in mining)
        print(f"\nmining: {len(mining)} histories, {totals['expected']} expected, {totals['found']} found, "
              f"{totals['wrong']} wrong, {totals['missed']} missed; {same} of {len(mining)} the same when "
              "killed and resumed\n", flush=True)
        outcomes = [outcome_row(case, root / f"outcome-{n}") for n, case in enumerate(OUTCOMES)]
    print(table(outcomes, ["case", "expected", "counted", "posted", "right"]))
    print(f"\noutcomes: {sum(row['right'] for row in outcomes)} of {len(outcomes)} counted as stated "
          f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
