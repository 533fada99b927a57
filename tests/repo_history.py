"""A repository with a history on the fake GitHub: a real git repository, pull requests of several
commits each, and review comments on them as GitHub records them (`original_commit_id`,
`original_line`, `original_start_line`), including the kinds `revisor mine` must skip."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.github_server import GIT_STATUS, FakeGitHub, PullRequest, git, new_app_key

REPO = "octo-org/shop"
APP_ID = "5151"
INSTALLATION = 9

STORAGE = '''import json


def save(path, data):
    handle = open(path, "w")
    handle.write(json.dumps(data))
    handle.close()


def load(path):
    return json.load(open(path))
'''
STORAGE_A = STORAGE + '''

def remove(path):
    import os
    os.remove(path)
'''
STORAGE_B = '''import json


def save(path, data):
    with open(path, "w") as handle:
        handle.write(json.dumps(data))


def load(path):
    return json.load(open(path))


def remove(path):
    import os
    os.remove(path)
'''
STORAGE_C = STORAGE_B.replace("import json\n", "import json\nimport os\n").replace("    import os\n", "")
UTIL = "def double(x):\n    return x * 2\n\n\ndef triple(x):\n    return x*3\n"


def commit(repo: Path, message: str, files: dict[str, str | None],
           moves: dict[str, str] | None = None, when: str | None = None) -> str:
    """Commit these file contents (None deletes) and renames, at `when` (ISO 8601; default now);
    the new commit's sha."""
    for old, new in (moves or {}).items():
        git(repo, "mv", old, new)
    for path, text in files.items():
        if text is None:
            git(repo, "rm", "-q", path)
            continue
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
        git(repo, "add", path)
    dated = {"GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when} if when else {}
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=Dev", "-c", "user.email=dev@example.com",
                    "commit", "-q", "-m", message], check=True, env={**os.environ, **dated})
    return git(repo, "rev-parse", "HEAD").strip()


def pull_files(repo: Path, base: str, head: str) -> list[dict]:
    """A pull request's files as GitHub lists them, each with its status and patch."""
    files = []
    for line in git(repo, "diff", "--name-status", base, head).splitlines():
        status, *_, path = line.split("\t")
        patch = git(repo, "diff", base, head, "--", path)
        files.append({"filename": path, "status": GIT_STATUS[status[0]], "patch": patch[patch.index("@@"):]})
    return files


def comment(pull: int, comment_id: int, path: str, line: int | None, body: str, commit_id: str, when: str,
            start: int | None = None, **extra) -> dict:
    return {"id": comment_id, "path": path, "body": body, "original_commit_id": commit_id,
            "commit_id": commit_id, "original_line": line, "line": line, "original_start_line": start,
            "start_line": start, "side": "RIGHT", "start_side": "RIGHT" if start else None,
            "subject_type": "line", "in_reply_to_id": None, "created_at": when, "updated_at": when,
            "html_url": f"https://github.com/{REPO}/pull/{pull}#discussion_r{comment_id}",
            "user": {"login": "reviewer", "type": "User"}, **extra}


def history_github(root: Path) -> tuple[FakeGitHub, str, dict[str, str]]:
    """The fake GitHub over a fresh history under `root`; its App key and the commits by name."""
    private, public = new_app_key()
    repo = root / "shop"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    start = {"app/storage.py": STORAGE, "app/util.py": UTIL, "app/old.py": "def legacy():\n    return 1\n",
             "README.md": "# shop\n"}
    c = {"base": commit(repo, "start", start)}
    c["p1a"] = commit(repo, "add remove", {"app/storage.py": STORAGE_A, "README.md": "# shop\n\nA shop.\n"})
    c["p1b"] = commit(repo, "context manager", {"app/storage.py": STORAGE_B})
    c["p1c"] = commit(repo, "import at the top; util renamed; old gone",
                      {"app/storage.py": STORAGE_C, "app/old.py": None},
                      moves={"app/util.py": "app/numbers.py"})
    c["p1d"] = commit(repo, "spaces", {"app/numbers.py": UTIL.replace("x*3", "x * 3")})
    git(repo, "checkout", "-q", "-b", "second", c["base"])
    c["p2a"] = commit(repo, "config", {"app/config.py": "TIMEOUT=30\nRETRIES=3\n"})
    c["p2b"] = commit(repo, "config spaces", {"app/config.py": "TIMEOUT = 30\nRETRIES = 3\n"})

    # A review begun on an older commit: the author's next commit, made before the comment was
    # written, changed its lines; it did not answer it.
    git(repo, "checkout", "-q", "-b", "fourth", c["base"])
    c["p4a"] = commit(repo, "tax", {"app/tax.py": "RATE=0.2\nLIMIT=10\n"}, when="2025-12-01T10:00:00Z")
    c["p4b"] = commit(repo, "tax spaces", {"app/tax.py": "RATE = 0.2\nLIMIT=10\n"},
                      when="2025-12-01T11:00:00Z")
    # A merge of the base branch changes the commented line: not an answer either.
    git(repo, "checkout", "-q", "main")
    c["main2"] = commit(repo, "rates", {"app/rates.py": "RATE=1\nCAP=2\nFLOOR=0\n"})
    git(repo, "checkout", "-q", "-b", "fifth")
    c["p5a"] = commit(repo, "ceiling", {"app/rates.py": "RATE=1\nCAP=2\nFLOOR=0\nCEIL=9\n"})
    git(repo, "checkout", "-q", "main")
    c["main3"] = commit(repo, "rate spaces", {"app/rates.py": "RATE = 1\nCAP=2\nFLOOR=0\n"})
    git(repo, "checkout", "-q", "fifth")
    git(repo, "-c", "user.name=Dev", "-c", "user.email=dev@example.com", "merge", "-q", "--no-edit", "main")
    c["p5b"] = git(repo, "rev-parse", "HEAD").strip()

    gh = FakeGitHub(APP_ID, public, INSTALLATION, REPO, git=repo)
    first = PullRequest(1, c["p1d"], "main", [], commits=[c["p1a"], c["p1b"], c["p1c"], c["p1d"]],
                        created_at="2026-03-01T09:00:00Z", updated_at="2026-03-05T09:00:00Z", state="closed")
    at = c["p1a"]
    first.review_comments = [
        comment(1, 101, "app/storage.py", 5, "use a context manager here", at, "2026-03-01T10:00:00Z"),
        comment(1, 102, "app/storage.py", 16, "import os at the top of the module", at,
                "2026-03-01T10:01:00Z", start=15),
        comment(1, 103, "app/storage.py", 11, "a with block here too?", at, "2026-03-01T10:02:00Z"),
        comment(1, 104, "app/storage.py", 5, "agreed", at, "2026-03-01T10:03:00Z", in_reply_to_id=101),
        comment(1, 105, "app/storage.py", 6, "lint: line too long", at, "2026-03-01T10:04:00Z",
                user={"login": "lint-bot[bot]", "type": "Bot"}),
        comment(1, 106, "app/storage.py", None, "split this module", at, "2026-03-01T10:05:00Z",
                subject_type="file"),
        comment(1, 107, "README.md", 3, "say what it sells", at, "2026-03-01T10:06:00Z"),
        comment(1, 108, "app/storage.py", 2, "why was this removed?", at, "2026-03-01T10:07:00Z",
                side="LEFT"),
        comment(1, 109, "app/util.py", 6, "spaces around the operator", at, "2026-03-01T10:08:00Z"),
        comment(1, 110, "app/old.py", 2, "inline this", at, "2026-03-01T10:09:00Z"),
        comment(1, 111, "app/storage.py", 5, "rename handle", "f" * 40, "2026-03-01T10:10:00Z"),
    ]
    second = PullRequest(2, c["p2b"], "main", [], commits=[c["p2a"], c["p2b"]],
                         created_at="2026-02-01T09:00:00Z", updated_at="2026-02-02T09:00:00Z")
    second.review_comments = [comment(2, 201, "app/config.py", 1, "spaces around =", c["p2a"],
                                      "2026-02-01T10:00:00Z")]
    third = PullRequest(3, c["base"], "main", [], commits=[c["base"]], created_at="2026-01-01T09:00:00Z",
                        updated_at="2026-01-01T09:00:00Z", state="closed")  # no review comments
    fourth = PullRequest(4, c["p4b"], "main", [], commits=[c["p4a"], c["p4b"]], state="closed",
                         created_at="2025-12-01T09:00:00Z", updated_at="2025-12-02T09:00:00Z")
    fourth.review_comments = [comment(4, 401, "app/tax.py", 1, "spaces around =", c["p4a"],
                                      "2025-12-01T12:00:00Z")]
    fifth = PullRequest(5, c["p5b"], "main", [], commits=[c["p5a"], c["p5b"]], state="closed",
                        created_at="2025-11-01T09:00:00Z", updated_at="2025-11-02T09:00:00Z")
    fifth.review_comments = [comment(5, 501, "app/rates.py", 1, "spaces around =", c["p5a"],
                                     "2025-11-01T10:00:00Z")]
    gh.pulls = {1: first, 2: second, 3: third, 4: fourth, 5: fifth}
    return gh, private, c
