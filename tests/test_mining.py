"""`revisor mine` against a repository history on the GitHub-like server: the exact pairs, the
skipped comments by reason, resuming after a real kill, and waiting out rate limits."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from revisor.bot.diff import kept, line_opcodes, moved_elsewhere, pair_texts
from revisor.bot.mining import MiningRun, mine, reaches
from revisor.model.errors import RevisorError
from revisor.training.datasets import load_dataset
from tests.conftest import ROOT
from tests.github_server import FakeGitHub, PullRequest, ServerThread, create_github_app, git, new_app_key
from tests.repo_history import APP_ID, INSTALLATION, REPO, comment, commit, history_github

TOKEN = "ghp_" + "m" * 36
EXPECTED = {  # comment id -> (code the reviewer saw, the code after the change)
    "101": ('def save(path, data):\n    handle = open(path, "w")\n    handle.write(json.dumps(data))\n'
            "    handle.close()\n\n\ndef load(path):",  # the three lines the answer rewrote, and three around
            'def save(path, data):\n    with open(path, "w") as handle:\n'
            "        handle.write(json.dumps(data))\n\n\ndef load(path):"),
    "102": ("def remove(path):\n    import os\n    os.remove(path)",
            "def remove(path):\n    os.remove(path)"),
    "109": ("def triple(x):\n    return x*3", "def triple(x):\n    return x * 3"),
    "201": ("TIMEOUT=30\nRETRIES=3", "TIMEOUT = 30\nRETRIES = 3"),
}
SKIPPED = ["never followed by a change", "a reply", "written by a bot", "a comment on a whole file",
           "not code", "on deleted lines", "file deleted before its lines changed",
           "outdated (its commit left the pull request)", "its lines changed in a merge, not in answer",
           "its lines changed in a commit made before it (a review begun on an older commit)"]


@pytest.fixture
def history(tmp_path):
    gh, private, commits = history_github(tmp_path)
    gh.tokens.add(TOKEN)
    with ServerThread(create_github_app(gh)) as url:
        yield gh, url, private, commits


def run_mine(url: str, output, *args: str, repo: str = REPO, env: dict | None = None, wait: bool = True):
    command = [sys.executable, "-m", "revisor", "mine", "--repo", repo, "--output", str(output), *args]
    env = {**os.environ, "GITHUB_API_URL": url, "GITHUB_TOKEN": TOKEN, **(env or {})}
    if not wait:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def records(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_mine_writes_each_pair_once_and_counts_what_it_skips(history, tmp_path):
    gh, url, _, c = history
    output = tmp_path / "pairs.jsonl"
    result = run_mine(url, output)
    assert result.returncode == 0, result.stderr
    assert "4 pair(s) in" in result.stdout and "5 pull request(s) read" in result.stdout
    for reason in SKIPPED:
        assert f"skipped 1: {reason}\n" in result.stdout
    mined = {e.id.rsplit("/", 1)[1]: e for e in load_dataset(output).examples}  # the schema train reads
    assert {k: (e.code_before, e.code_after) for k, e in mined.items()} == EXPECTED
    assert mined["101"].comment == "use a context manager here" and mined["101"].language == "python"
    assert mined["201"].created_at == "2026-02-01T10:00:00+00:00"
    source = {r["source"]["comment_id"]: r["source"] for r in records(output)}
    assert source[101]["commit_before"] == c["p1a"] and source[101]["commit_after"] == c["p1b"]
    assert source[102]["lines"] == [15, 16] and source[102]["commit_after"] == c["p1c"]  # followed past p1b
    assert (source[109]["path"], source[109]["path_after"]) == ("app/util.py", "app/numbers.py")
    assert source[109]["commit_after"] == c["p1d"]  # the rename in p1c changed no line
    assert source[201]["url"].endswith("/pull/2#discussion_r201")
    assert ("GET", f"/repos/{REPO}/pulls") in gh.requests  # listed over three pages of two
    assert sum(1 for r in gh.requests if r == ("GET", f"/repos/{REPO}/pulls")) == 3

    again = run_mine(url, output)  # everything done: nothing is written twice
    assert again.returncode == 0 and len(records(output)) == 4


def test_mine_since_and_limit_pick_recent_pull_requests(history, tmp_path):
    _, url, _, _ = history
    assert run_mine(url, tmp_path / "since.jsonl", "--since", "2026-03-01").returncode == 0
    assert {r["source"]["pull"] for r in records(tmp_path / "since.jsonl")} == {1}
    limited = run_mine(url, tmp_path / "limit.jsonl", "--limit", "1")
    assert "3 pair(s) in" in limited.stdout and "1 pull request(s) read" in limited.stdout


def test_mine_resumes_after_a_kill_with_no_pair_lost_or_doubled(history, tmp_path):
    gh, url, _, _ = history
    output = tmp_path / "pairs.jsonl"
    state = tmp_path / "pairs.jsonl.state.json"
    gh.slow_paths["/pulls/2/comments"] = 30  # the run is killed while it waits here
    process = run_mine(url, output, wait=False)
    deadline = time.monotonic() + 60
    while not (state.exists() and json.loads(state.read_text())["pulls_done"] == [1]):
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert len(records(output)) == 3
    with output.open("a") as cut:  # as if killed in the middle of writing the next record
        cut.write('{"_id": "octo-org/shop#2/201", "old": " TIME')
    gh.slow_paths.clear()
    result = run_mine(url, output)
    assert result.returncode == 0, result.stderr
    assert "4 pair(s) in" in result.stdout and "4 pull request(s) read" in result.stdout  # 1 was done
    ids = [r["_id"] for r in records(output)]
    assert sorted(ids) == sorted(f"{REPO}#{n}" for n in ("1/101", "1/102", "1/109", "2/201"))


def test_a_run_killed_before_its_first_pull_request_is_done_resumes(history, tmp_path):
    gh, url, _, _ = history
    output = tmp_path / "pairs.jsonl"
    gh.slow_paths[f"/repos/{REPO}/pulls"] = 30  # killed while the pull requests are listed
    process = run_mine(url, output, wait=False)
    deadline = time.monotonic() + 60
    while not output.exists():
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    gh.slow_paths.clear()
    result = run_mine(url, output)
    assert result.returncode == 0 and "4 pair(s) in" in result.stdout, result.stderr


def test_mine_waits_out_primary_and_secondary_rate_limits(history, tmp_path):
    """As the App: its installation on the repository is looked up. Each limit is answered once:
    a client that retried before the reset or the Retry-After would be refused again."""
    from revisor.bot.config import GitHubSettings
    from revisor.bot.github import repository_client

    gh, url, private, _ = history
    github = GitHubSettings(api_url=url, app_id=gh.app_id, app_private_key=private)
    repository = repository_client(github, REPO, max_wait_s=60).get_repo(REPO)
    gh.rate_limit_next = ["primary", "secondary"]
    run = mine(repository, MiningRun.open(tmp_path / "new" / "pairs.jsonl", REPO))
    assert gh.rate_limited == ["primary", "secondary"]
    assert run.pairs == 4 and len(records(tmp_path / "new" / "pairs.jsonl")) == 4


def test_mine_errors_are_one_line(history, tmp_path):
    _, url, _, _ = history
    taken = tmp_path / "notes.jsonl"
    taken.write_text("mine\n")
    no_credentials = {"GITHUB_TOKEN": "", "GITHUB_APP_ID": ""}
    for result, fragment in [
        (run_mine(url, tmp_path / "a.jsonl", repo="not-a-repo"), "expected OWNER/NAME"),
        (run_mine(url, taken), "is not a mining run's output"),
        (run_mine(url, tmp_path / "b.jsonl", env=no_credentials), "set GITHUB_TOKEN"),
        (run_mine(url, tmp_path / "c.jsonl", env={"GITHUB_TOKEN": "ghp_wrong"}), "GitHub answered 401"),
    ]:
        assert result.returncode == 1 and fragment in result.stderr, result.stderr
        assert "Traceback" not in result.stderr and result.stderr.strip().count("\n") == 0


def test_a_pull_request_answered_after_it_was_mined_while_open_gives_its_pair(history, tmp_path):
    gh, url, _, c = history
    output = tmp_path / "pairs.jsonl"
    second = gh.pulls[2]
    second.commits, second.head_sha = [c["p2a"]], c["p2a"]  # open, its comment not answered yet
    assert "3 pair(s) in" in run_mine(url, output).stdout
    second.commits, second.head_sha = [c["p2a"], c["p2b"]], c["p2b"]  # the author answers it
    assert "4 pair(s) in" in run_mine(url, output).stdout
    assert "4 pair(s) in" in run_mine(url, output).stdout and len(records(output)) == 4  # once


def test_a_run_with_another_since_reads_the_pull_requests_done_again(history, tmp_path):
    _, url, _, _ = history
    output = tmp_path / "pairs.jsonl"
    late = run_mine(url, output, "--since", "2026-03-01T10:05:00")  # 101 and 102 came before it
    assert {r["source"]["comment_id"] for r in records(output)} == {109}, late.stdout
    assert "4 pair(s) in" in run_mine(url, output).stdout  # pull request 1 is read again, all of it
    assert sorted(r["source"]["comment_id"] for r in records(output)) == [101, 102, 109, 201]


def test_a_run_into_another_repositorys_output_is_refused(tmp_path):
    run = MiningRun(tmp_path / "pairs.jsonl", "a/b", pulls_done=[1])
    run.output.write_text("")
    run.save()
    assert MiningRun.open(run.output, "a/b").pulls_done == [1]
    with pytest.raises(RevisorError, match="holds pairs of a/b, not c/d"):
        MiningRun.open(run.output, "c/d")


def test_files_over_a_megabyte_symlinks_and_submodules_are_read_as_github_serves_them(history):
    from revisor.bot.github import file_lines, token_client
    from tests.github_server import git
    from tests.repo_history import commit

    gh, url, _, commits = history
    big = "value = 1\n" * 120_000  # 1.2 MB: the contents endpoint gives no text, the blob does
    (gh.git / "link").symlink_to("../outside")
    git(gh.git, "add", "link")
    git(gh.git, "update-index", "--add", "--cacheinfo", f"160000,{commits['base']},vendor/lib")
    head = commit(gh.git, "big file, symlink, submodule", {"data/big.py": big})
    repo = token_client(url, TOKEN).get_repo(REPO)
    assert file_lines(repo, "data/big.py", head) == big.splitlines()
    assert file_lines(repo, "link", head) is None and file_lines(repo, "vendor/lib", head) is None
    assert file_lines(repo, "app/storage.py", head)[0] == "import json"


def test_lines_added_beside_the_commented_ones_answer_only_at_their_depth():
    before = ["def load(path):", "    data = read(path)", "    return data", "", "", "def other():",
              "    pass"]

    def answers(after: list[str], start: int = 1, end: int = 3) -> bool:
        return reaches(line_opcodes(before, after), before, after, start, end)

    check = [*before[:2], "    if data is None:", "        raise ValueError(path)", *before[2:]]
    assert answers(check)  # "add a check after this": among the lines
    assert answers([*before[:3], "    log(data)", *before[3:]])  # right below, in the same block
    below = [*before[:3], "", "", "def unrelated():", "    return 1", *before[3:]]
    assert not answers(below)  # a new function right below is other work...
    assert kept(line_opcodes(before, below), 1, 3) == (1, 3)  # ...and the lines are followed alone
    assert not answers([*before[:5], "import os", *before[5:]])  # further away
    assert answers([before[0], "    data = read_json(path)", *before[2:]])  # rewritten
    assert answers([before[0], *before[2:]])  # deleted


@pytest.mark.slow
def test_a_pull_request_over_250_commits_and_a_commit_over_3000_files_are_read_whole(tmp_path):
    """GitHub lists a pull request's first 250 commits and a commit's first 3,000 files: the
    answers here lie beyond both."""
    repo = tmp_path / "big"
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    base = commit(repo, "start", {"app/rates.py": "RATE=1\n", "app/fees.py": "FEE=2\n"})
    first = commit(repo, "rates", {"app/rates.py": "RATE=1\nCAP=2\n", "app/fees.py": "FEE=2\nMIN=1\n"})
    shas = [first] + [commit(repo, f"note {n}", {"notes.md": f"{n}\n"}) for n in range(250)]
    shas.append(commit(repo, "spaces", {"app/rates.py": "RATE = 1\nCAP = 2\n"}))  # the 252nd
    generated = {f"a-gen/f{n:04}.txt": f"{n}\n" for n in range(3000)}  # listed before "app/…"
    shas.append(commit(repo, "generate; fees spaced", {**generated, "app/fees.py": "FEE = 2\nMIN = 1\n"}))
    private, public = new_app_key()
    gh = FakeGitHub(APP_ID, public, INSTALLATION, REPO, git=repo, per_page_cap=100, tokens={TOKEN})
    gh.pulls[1] = PullRequest(1, shas[-1], "main", [], commits=shas, base_sha=base, state="closed")
    gh.pulls[1].review_comments = [
        comment(1, 1, "app/rates.py", 2, "spaces around =", first, "2026-01-01T00:00:00Z", start=1),
        comment(1, 2, "app/fees.py", 2, "spaces here too", first, "2026-01-01T00:00:00Z", start=1)]
    with ServerThread(create_github_app(gh)) as url:
        output = tmp_path / "pairs.jsonl"
        result = run_mine(url, output)
    assert result.returncode == 0, result.stderr
    mined = {e.id.rsplit("/", 1)[1]: (e.code_before, e.code_after) for e in load_dataset(output).examples}
    assert mined == {"1": ("RATE=1\nCAP=2", "RATE = 1\nCAP = 2"), "2": ("FEE=2\nMIN=1", "FEE = 2\nMIN = 1")}


def test_lines_stay_with_the_file_a_copy_was_made_from(tmp_path):
    repo = tmp_path / "copies"
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    rates = "".join(f"RATE_{n} = {n}\n" for n in range(12))
    base = commit(repo, "start", {"app/rates.py": rates})
    first = commit(repo, "cap", {"app/rates.py": rates + "CAP=2\n"})
    copied = commit(repo, "a copy for v2, changed; the original grows", {
        "app/rates.py": "# rates\n" + rates + "CAP=2\n", "app/rates_v2.py": rates + "CAP = 20\n"})
    answered = commit(repo, "spaces", {"app/rates.py": "# rates\n" + rates + "CAP = 2\n"})
    assert "C" in git(repo, "diff-tree", "-r", "-M", "-C", "--name-status", copied)  # git saw a copy
    private, public = new_app_key()
    gh = FakeGitHub(APP_ID, public, INSTALLATION, REPO, git=repo, tokens={TOKEN})
    gh.pulls[1] = PullRequest(1, answered, "main", [], commits=[first, copied, answered], base_sha=base,
                              state="closed")
    gh.pulls[1].review_comments = [comment(1, 1, "app/rates.py", 13, "spaces around =", first,
                                           "2026-01-01T00:00:00Z")]
    with ServerThread(create_github_app(gh)) as url:
        output = tmp_path / "pairs.jsonl"
        assert run_mine(url, output).returncode == 0
    [record] = records(output)
    assert record["source"]["commit_after"] == answered and record["source"]["path_after"] == "app/rates.py"
    assert record["new"].splitlines()[-1] == " CAP = 2"


def test_lines_cut_and_pasted_elsewhere_are_no_answer():
    before = ["def a():", "    return 1", "", "", "def b():", "    x = 2", "    return x"]

    def moved(after: list[str]) -> bool:
        return moved_elsewhere(before, after, line_opcodes(before, after), 0, 2)

    pasted = [*before[4:], "", "", *before[:2]]
    assert reaches(line_opcodes(before, pasted), before, pasted, 0, 2)  # they left their place...
    assert moved(pasted)  # ...for below the longer b(), unchanged
    assert moved([*before[4:], "", "", "def a():", "    return 1  "])  # trailing spaces aside
    assert not moved([*before[4:], "", "", "def a():", "    return 10"])  # moved and changed: an answer
    assert not moved(["def a():", "    return 11", *before[2:]])  # changed in place
    assert not moved(before[2:])  # deleted


def test_a_pair_is_the_change_that_answered_with_three_lines_around_it_on_each_side():
    before = [f"line_{n} = {n}" for n in range(40)]
    elsewhere = [f"other_{n} = {n}" for n in range(300)]  # the same commit's work further down
    after = [*before[:9], "line_9 = 90", *before[10:15], *elsewhere, *before[15:]]
    assert pair_texts(before, after, 9, 10) == ("\n".join(before[6:13]), "\n".join(after[6:13]))
    wider = [*before[:9], "lines_9_to_11 = (9, 10, 11)", *before[12:]]  # the answer rewrote three lines
    assert pair_texts(before, wider, 9, 10) == ("\n".join(before[6:15]), "\n".join(wider[6:13]))
