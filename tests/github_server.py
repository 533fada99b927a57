"""A local server that behaves as GitHub's REST API documents, for the endpoints Revisor uses.

App JWTs are verified (RS256, `iss` = the App id, `iat`/`exp`), installation tokens are issued and
required, lists are paginated with `Link` headers, every answer carries rate-limit headers, and a
review comment whose lines are not in one hunk of the pull request's diff gets 422. With `git`, a
real git repository gives file contents at any ref and each commit's files; primary and secondary
rate limits answer 403 as GitHub does.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import secrets
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import jwt
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from unidiff import PatchSet

DOCS = "https://docs.github.com/rest"


def new_app_key() -> tuple[str, str]:
    """(private PEM, public PEM) of a fresh RSA key, as GitHub generates for an App."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


BASE_SHA = "0" * 40
"""The base branch's head of a pull request, unless it names one of its git history's commits."""


@dataclass
class PullRequest:
    number: int
    head_sha: str
    base_ref: str
    files: list[dict]  # {"filename", "status", "patch"}
    review_comments: list[dict] = field(default_factory=list)
    reviews: list[dict] = field(default_factory=list)
    issue_comments: list[dict] = field(default_factory=list)  # the conversation's comments
    commits: list[str] = field(default_factory=list)  # oldest first, as GitHub lists them
    created_at: str = "2026-01-01T00:00:00Z"
    updated_at: str = "2026-01-01T00:00:00Z"
    state: str = "open"  # or "closed"
    base_sha: str = BASE_SHA


@dataclass
class FakeGitHub:
    app_id: str
    public_key: str
    installation_id: int
    repo: str  # owner/name
    pulls: dict[int, PullRequest] = field(default_factory=dict)
    contents: dict[tuple[str, str], str | bytes] = field(default_factory=dict)  # (ref, path) -> text
    compares: dict[tuple[str, str], list[dict]] = field(default_factory=dict)  # (base, head) -> files
    tokens: set[str] = field(default_factory=set)
    requests: list[tuple[str, str]] = field(default_factory=list)
    fail_next: list[int] = field(default_factory=list)  # statuses to answer next, e.g. [502]
    fail_after_write: list[int] = field(default_factory=list)  # statuses to answer once a comment or
    # review was written (a reaction is not one)
    reactions: list[dict] = field(default_factory=list)  # {"kind", "comment_id", "content", "user"}
    per_page_cap: int = 2  # small pages, so pagination is exercised
    slow_paths: dict[str, float] = field(default_factory=dict)  # path suffix -> seconds to wait
    failing_paths: dict[str, int] = field(default_factory=dict)  # path suffix -> status answered
    git: Path | None = None  # a repository whose commits the pull requests' commits are
    rate_limit_next: list[str] = field(default_factory=list)  # "primary" / "secondary" limits to hit next
    rate_limited: list[str] = field(default_factory=list)  # the kind of limit of each 403 answered
    limit_kind: str = ""
    pull_commits_cap: int = 250  # GitHub lists a pull request's first 250 commits, no more
    commit_files_cap: int = 3000  # and a commit's first 3,000 files
    limit_until: float = 0.0
    pushes: dict[str, tuple[str, list[dict]]] = field(default_factory=dict)  # path suffix -> (head, files)
    # of a push that lands once a request to that path was answered
    hook_deliveries: list[dict] = field(default_factory=list)  # the App's webhook deliveries, oldest first
    redelivered: list[int] = field(default_factory=list)  # ids of deliveries asked to be sent again
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1000))

    def base(self, request: Request) -> str:
        return str(request.base_url).rstrip("/")


def rate_headers() -> dict[str, str]:
    return {"X-RateLimit-Limit": "5000", "X-RateLimit-Remaining": "4999", "X-RateLimit-Used": "1",
            "X-RateLimit-Reset": str(int(time.time()) + 3600), "X-RateLimit-Resource": "core"}


def error(status: int, message: str, headers: dict | None = None, **extra) -> JSONResponse:
    return JSONResponse({"message": message, "documentation_url": DOCS, **extra}, status,
                        {**rate_headers(), **(headers or {})})


def rate_limited(gh: FakeGitHub) -> JSONResponse | None:
    """GitHub's answer while a rate limit lasts: a primary limit (403, none left until
    `X-RateLimit-Reset`) or a secondary one (403 with `Retry-After`); None when none does."""
    now = time.time()
    if now >= gh.limit_until and gh.rate_limit_next:
        gh.limit_kind = gh.rate_limit_next.pop(0)
        gh.limit_until = int(now) + 2 if gh.limit_kind == "primary" else now + 1
    if now >= gh.limit_until:
        return None
    gh.rate_limited.append(gh.limit_kind)
    if gh.limit_kind == "primary":
        return error(403, "API rate limit exceeded for installation ID 1.",
                     {"X-RateLimit-Remaining": "0", "X-RateLimit-Used": "5000",
                      "X-RateLimit-Reset": str(int(gh.limit_until))})
    return error(403, "You have exceeded a secondary rate limit. Please wait a few minutes before you try "
                      "again.", {"Retry-After": str(max(1, round(gh.limit_until - now)))})


GIT_STATUS = {"A": "added", "M": "modified", "D": "removed", "R": "renamed", "C": "copied", "T": "changed"}


MAX_BODY_CHARS = 65_536
"""GitHub's limit on the body of a comment or review."""
MAX_CONTENTS_BYTES = 2**20
"""The largest file whose text GitHub's contents endpoint includes; larger ones need the blob."""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          check=True).stdout


def listed_files(name_status: str) -> list[dict]:
    """Files as GitHub lists them, from `git diff --name-status -M -C` (renames and copies with the
    name they came from)."""
    files = []
    for line in name_status.splitlines():
        status, *paths = line.split("\t")
        entry = {"filename": paths[-1], "status": GIT_STATUS[status[0]], "sha": "b" * 40}
        if status[0] in "RC":
            entry["previous_filename"] = paths[0]
        files.append(entry)
    return files


def commit_files(repo: Path, sha: str) -> list[dict]:
    """A commit's files as GitHub's commit endpoint lists them: against its first parent, a merge's
    too."""
    return listed_files(git(repo, "diff-tree", "--no-commit-id", "-r", "-M", "-C", "--root", "-m",
                            "--first-parent", "--name-status", sha))


def compared_files(repo: Path, base: str, head: str) -> list[dict]:
    """The files changed from the merge base of `base` and `head` to `head`, as GitHub's compare
    endpoint lists them."""
    return listed_files(git(repo, "diff", "--name-status", "-M", f"{base}...{head}"))


def ok(body, status: int = 200, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(body, status, {**rate_headers(), **(headers or {})})


def target_lines(patch: str) -> list[set[int]]:
    """Per hunk, the new-side line numbers that may carry a RIGHT-side comment."""
    parsed = PatchSet(f"--- a/f\n+++ b/f\n{patch}\n")
    return [{ln.target_line_no for ln in hunk if ln.target_line_no} for hunk in parsed[0]]


def create_github_app(gh: FakeGitHub) -> FastAPI:
    app = FastAPI()
    owner, name = gh.repo.split("/")
    prefix = f"/repos/{owner}/{name}"

    @app.middleware("http")
    async def record_and_authenticate(request: Request, call_next):
        gh.requests.append((request.method, request.url.path))
        for suffix, seconds in gh.slow_paths.items():
            if request.url.path.endswith(suffix):
                await asyncio.sleep(seconds)
        if gh.fail_next:
            return error(gh.fail_next.pop(0), "Server Error")
        for suffix, status in gh.failing_paths.items():
            if request.url.path.endswith(suffix):
                return error(status, "Forbidden")
        as_app = (request.url.path == "/app" or request.url.path.startswith("/app/")
                  or request.url.path == f"{prefix}/installation")
        limited = None if as_app else rate_limited(gh)
        if limited is not None:
            return limited
        header = request.headers.get("authorization", "")
        if as_app:  # endpoints that take the App's JWT, not a token
            if not header.startswith("Bearer "):
                return error(401, "A JSON web token could not be decoded")
            try:
                claims = jwt.decode(header[7:], gh.public_key, algorithms=["RS256"],
                                    options={"require": ["iat", "exp", "iss"]})
            except jwt.PyJWTError as failure:
                return error(401, f"A JSON web token could not be decoded ({failure})")
            if str(claims["iss"]) != gh.app_id or claims["exp"] - claims["iat"] > 600:
                return error(401, "'Issuer' claim ('iss') must be an Integer or the App's id")
        else:
            scheme, _, token = header.partition(" ")
            if scheme.lower() not in ("token", "bearer") or token not in gh.tokens:
                return error(401, "Bad credentials")
        response = await call_next(request)
        for suffix in [s for s in gh.pushes if request.url.path.endswith(s)]:  # a push lands
            pull = gh.pulls[int(request.url.path.split("/pulls/")[1].split("/")[0])]
            pull.head_sha, pull.files = gh.pushes.pop(suffix)
        wrote = request.method == "POST" and not as_app and not request.url.path.endswith("/reactions")
        if wrote and gh.fail_after_write and response.status_code < 300:
            return error(gh.fail_after_write.pop(0), "Server Error")  # done, but the client cannot know
        return response

    @app.get("/app")
    def the_app():
        return ok({"id": int(gh.app_id), "slug": "revisor", "name": "Revisor", "owner": {"login": owner}})

    @app.get("/app/hook/deliveries")
    def hook_deliveries(request: Request):
        """Newest first, paged by an opaque `cursor` as GitHub pages this list."""
        per_page = min(int(request.query_params.get("per_page", 30)), gh.per_page_cap)
        start = int(request.query_params.get("cursor") or 0)
        newest_first = gh.hook_deliveries[::-1]
        page = newest_first[start:start + per_page]
        headers = {}
        if start + per_page < len(newest_first):
            headers["Link"] = (f'<{gh.base(request)}/app/hook/deliveries?per_page={per_page}'
                               f'&cursor={start + per_page}>; rel="next"')
        return ok(page, headers=headers)

    @app.post("/app/hook/deliveries/{delivery_id}/attempts")
    def redeliver(delivery_id: int):
        if not any(d["id"] == delivery_id for d in gh.hook_deliveries):
            return error(404, "Not Found")
        gh.redelivered.append(delivery_id)
        return ok({}, 202)

    @app.post("/app/installations/{installation_id}/access_tokens")
    def access_token(installation_id: int):
        if installation_id != gh.installation_id:
            return error(404, "Not Found")
        token = "ghs_" + secrets.token_hex(16)
        gh.tokens.add(token)
        expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
        return ok({"token": token, "expires_at": expires, "permissions": {"pull_requests": "write"}}, 201)

    def repo_json(request: Request) -> dict:
        return {"id": 1, "name": name, "full_name": gh.repo, "owner": {"login": owner},
                "url": f"{gh.base(request)}{prefix}", "default_branch": "main"}

    def pull_or_404(number: int) -> PullRequest | JSONResponse:
        return gh.pulls.get(number) or error(404, "Not Found")

    def page_of(request: Request, items: list) -> tuple[list, dict]:
        """The page of `items` asked for, and the Link header to the next and the last."""
        per_page = min(int(request.query_params.get("per_page", 30)), gh.per_page_cap)
        page = int(request.query_params.get("page", 1))
        last = max(1, -(-len(items) // per_page))
        links = []
        url = f"{gh.base(request)}{request.url.path}?per_page={per_page}"
        if page < last:
            links.append(f'<{url}&page={page + 1}>; rel="next"')
        links.append(f'<{url}&page={last}>; rel="last"')
        return items[(page - 1) * per_page : page * per_page], {"Link": ", ".join(links)}

    def paginated(request: Request, items: list) -> JSONResponse:
        page, headers = page_of(request, items)
        return ok(page, headers=headers)

    @app.get(prefix)
    def get_repo(request: Request):
        return ok(repo_json(request))

    def pull_json(request: Request, pull: PullRequest) -> dict:
        url = f"{gh.base(request)}{prefix}/pulls/{pull.number}"
        return {"number": pull.number, "url": url, "state": pull.state, "draft": False,
                "issue_url": f"{gh.base(request)}{prefix}/issues/{pull.number}",
                "created_at": pull.created_at, "updated_at": pull.updated_at,
                "head": {"sha": pull.head_sha, "ref": "feature"}, "commits": len(pull.commits),
                "base": {"sha": pull.base_sha, "ref": pull.base_ref, "repo": repo_json(request)}}

    @app.get(prefix + "/installation")
    def repo_installation():
        return ok({"id": gh.installation_id, "app_id": int(gh.app_id), "account": {"login": owner}})

    @app.get(prefix + "/pulls")
    def list_pulls(request: Request):
        params = request.query_params
        if params.get("state", "open") not in ("open", "closed", "all"):
            return error(422, "Validation Failed", errors=[{"field": "state", "code": "invalid"}])
        key = {"created": "created_at", "updated": "updated_at"}.get(params.get("sort", "created"))
        if key is None:
            return error(422, "Validation Failed", errors=[{"field": "sort", "code": "invalid"}])
        pulls = sorted(gh.pulls.values(), key=lambda p: getattr(p, key),
                       reverse=params.get("direction", "desc") == "desc")
        return paginated(request, [pull_json(request, p) for p in pulls])

    @app.get(prefix + "/pulls/{number}/commits")
    def get_pull_commits(request: Request, number: int):
        pull = pull_or_404(number)
        if isinstance(pull, JSONResponse):
            return pull
        return paginated(request, [{"sha": sha, "url": f"{gh.base(request)}{prefix}/commits/{sha}"}
                                  for sha in pull.commits[:gh.pull_commits_cap]])

    @app.get(prefix + "/pulls/{number}")
    def get_pull(request: Request, number: int):
        pull = pull_or_404(number)
        return pull if isinstance(pull, JSONResponse) else ok(pull_json(request, pull))

    @app.get(prefix + "/pulls/{number}/files")
    def get_files(request: Request, number: int):
        pull = pull_or_404(number)
        return pull if isinstance(pull, JSONResponse) else paginated(request, pull.files)

    @app.get(prefix + "/pulls/{number}/comments")
    def get_comments(request: Request, number: int):
        pull = pull_or_404(number)
        return pull if isinstance(pull, JSONResponse) else paginated(request, pull.review_comments)

    @app.get(prefix + "/pulls/{number}/reviews")
    def get_reviews(request: Request, number: int):
        pull = pull_or_404(number)
        return pull if isinstance(pull, JSONResponse) else paginated(request, pull.reviews)

    @app.post(prefix + "/pulls/{number}/comments/{comment_id}/replies")
    async def reply(request: Request, number: int, comment_id: int):
        pull = pull_or_404(number)
        if isinstance(pull, JSONResponse):
            return pull
        parent = next((c for c in pull.review_comments if c["id"] == comment_id), None)
        if parent is None:
            return error(404, "Not Found")
        body = (await request.json()).get("body")
        if not body:
            return error(422, "Validation Failed", errors=[{"field": "body", "code": "missing_field"}])
        comment = {**{k: parent[k] for k in ("path", "line", "start_line", "side")}, "id": next(gh._ids),
                   "body": body, "in_reply_to_id": comment_id,
                   "user": {"login": "revisor[bot]", "type": "Bot"}}
        pull.review_comments.append(comment)
        return ok(comment, 201)

    @app.get(prefix + "/issues/{number}/comments")
    def get_issue_comments(request: Request, number: int):
        pull = pull_or_404(number)
        return pull if isinstance(pull, JSONResponse) else paginated(request, pull.issue_comments)

    @app.post(prefix + "/issues/{number}/comments")
    async def create_issue_comment(request: Request, number: int):
        pull = pull_or_404(number)
        if isinstance(pull, JSONResponse):
            return pull
        body = (await request.json()).get("body")
        if not body:
            return error(422, "Validation Failed", errors=[{"field": "body", "code": "missing_field"}])
        comment = {"id": next(gh._ids), "body": body, "user": {"login": "revisor[bot]", "type": "Bot"}}
        pull.issue_comments.append(comment)
        return ok(comment, 201)

    @app.post(prefix + "/{kind}/comments/{comment_id}/reactions")
    async def react(request: Request, kind: str, comment_id: int):
        """201 for a new reaction, 200 with the one there when the same user reacted so already."""
        where = {"pulls": "review_comments", "issues": "issue_comments"}.get(kind)
        comments = [c for p in gh.pulls.values() for c in getattr(p, where)] if where else []
        if not any(c["id"] == comment_id for c in comments):
            return error(404, "Not Found")
        content = (await request.json()).get("content")
        if content not in ("+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"):
            return error(422, "Validation Failed", errors=[{"field": "content", "code": "invalid"}])
        reaction = {"kind": kind, "comment_id": comment_id, "content": content, "user": "revisor[bot]"}
        if reaction in gh.reactions:
            return ok({"id": gh.reactions.index(reaction) + 1, "content": content})
        gh.reactions.append(reaction)
        return ok({"id": len(gh.reactions), "content": content}, 201)

    @app.post(prefix + "/pulls/{number}/reviews")
    async def create_review(request: Request, number: int):
        pull = pull_or_404(number)
        if isinstance(pull, JSONResponse):
            return pull
        data = await request.json()
        if len(data.get("body") or "") > MAX_BODY_CHARS:
            too_long = {"field": "body", "code": "custom",
                        "message": "body is too long (maximum is 65536 characters)"}
            return error(422, "Validation Failed", errors=[too_long])
        at_head = data.get("commit_id") in (None, pull.head_sha)  # lines are those of the review's commit
        files = pull.files if at_head else gh.compares.get((pull.base_sha, data["commit_id"]), [])
        patches = {f["filename"]: f.get("patch") for f in files}
        for comment in data.get("comments", []):
            hunks = target_lines(patches[comment["path"]]) if patches.get(comment.get("path")) else []
            start = comment.get("start_line") or comment.get("line")
            lines = set(range(start or 0, (comment.get("line") or 0) + 1))
            if comment.get("side", "RIGHT") != "RIGHT" or not lines or not any(lines <= h for h in hunks):
                return error(422, "Unprocessable Entity",
                             errors=["Pull request review thread line must be part of the diff"])
        review = {"id": next(gh._ids), "body": data.get("body", ""), "state": "COMMENTED",
                  "commit_id": data.get("commit_id"), "user": {"login": "revisor[bot]", "type": "Bot"}}
        pull.reviews.append(review)
        for comment in data.get("comments", []):
            pull.review_comments.append({**comment, "id": next(gh._ids), "user": review["user"],
                                         "pull_request_review_id": review["id"]})
        return ok(review)

    @app.get(prefix + "/compare/{basehead}")
    def compare(request: Request, basehead: str):
        """Its commits a page at a time (the files on every page), as GitHub paginates them."""
        base, _, head = basehead.partition("...")
        files, commits = gh.compares.get((base, head)), []
        if files is None and gh.git is not None:  # the repository's own history
            try:
                files = compared_files(gh.git, base, head)
                commits = git(gh.git, "rev-list", "--reverse", f"{base}..{head}").split()
            except subprocess.CalledProcessError:
                files = None
        if files is None:
            return error(404, "Not Found")
        page, headers = page_of(request, [{"sha": sha, "url": f"{gh.base(request)}{prefix}/commits/{sha}"}
                                          for sha in commits])
        return ok({"status": "ahead", "ahead_by": len(commits), "behind_by": 0, "total_commits": len(commits),
                   "commits": page, "files": files}, headers=headers)

    @app.get(prefix + "/commits/{sha}")
    def get_commit(request: Request, sha: str):
        commit = {"sha": sha, "url": f"{gh.base(request)}{prefix}/commits/{sha}"}
        if gh.git is None:
            return ok(commit)
        try:
            parents, seconds = git(gh.git, "show", "-s", "--format=%P%n%ct", sha).splitlines()
            files = commit_files(gh.git, sha)[:gh.commit_files_cap]
        except subprocess.CalledProcessError:
            return error(422, f"No commit found for SHA: {sha}")
        when = datetime.fromtimestamp(int(seconds), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        person = {"name": "Dev", "email": "dev@example.com", "date": when}
        return ok({**commit, "files": files, "commit": {"author": person, "committer": person, "message": ""},
                   "parents": [{"sha": p, "url": f"{gh.base(request)}{prefix}/commits/{p}"}
                               for p in parents.split()]})

    @app.get(prefix + "/contents/{path:path}")
    def get_contents(request: Request, path: str):
        ref = request.query_params.get("ref", "main")
        text, sha = gh.contents.get((ref, path)), "c" * 40
        about = {"path": path, "name": path.rsplit("/", 1)[-1]}
        if text is None and gh.git is not None:
            entry = git(gh.git, "ls-tree", ref, "--", path).split("\t")[0].split()
            if entry and entry[0] == "160000":  # as GitHub describes a submodule
                return ok({**about, "type": "submodule", "sha": entry[2], "size": 0,
                           "submodule_git_url": "https://github.com/octo-org/other.git"})
            if entry and entry[0] == "120000":  # a symlink (here: to no file of the repository)
                target = git(gh.git, "cat-file", "blob", entry[2])
                return ok({**about, "type": "symlink", "target": target, "sha": entry[2],
                           "size": len(target)})
            if entry and entry[1] == "blob":
                text, sha = git(gh.git, "cat-file", "blob", entry[2]), entry[2]
        if text is None:
            return error(404, "Not Found")
        raw = text if isinstance(text, bytes) else text.encode()  # bytes: a file in another encoding
        if len(raw) > MAX_CONTENTS_BYTES:  # GitHub: 1-100 MB files come without content
            return ok({**about, "type": "file", "encoding": "none", "content": "", "sha": sha,
                       "size": len(raw)})
        return ok({**about, "type": "file", "encoding": "base64", "sha": sha, "size": len(raw),
                   "content": base64.b64encode(raw).decode()})

    @app.get(prefix + "/git/blobs/{sha}")
    def get_blob(sha: str):
        try:
            text = git(gh.git, "cat-file", "blob", sha) if gh.git is not None else None
        except subprocess.CalledProcessError:
            text = None
        if text is None:
            return error(404, "Not Found")
        return ok({"sha": sha, "size": len(text.encode()), "encoding": "base64",
                   "content": base64.b64encode(text.encode()).decode()})

    return app


class ServerThread:
    """uvicorn serving an app on a free loopback port, in a thread."""

    def __init__(self, app: FastAPI):
        # A request still waiting on a slow path when the test ends is cut off after a second.
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                                    timeout_graceful_shutdown=1))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
