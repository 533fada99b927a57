"""A consistent pull-request scenario on the fake GitHub, with payloads built from real ones."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from pathlib import Path

from tests.conftest import ROOT, shared_path
from tests.github_server import FakeGitHub, PullRequest, new_app_key

REPO = "Codertocat/Hello-World"
PR = 2
HEAD = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
INSTALLATION = 1
APP_ID = "4242"
SECRET = "a-webhook-secret-of-some-length"
COMMENT_ID = 77
DEMO_PATCH = (ROOT / "examples" / "demo.diff").read_text().split("+++ b/app/storage.py\n", 1)[1]
OTHER_PATCH = "@@ -1,2 +1,3 @@\n line one\n+line two\n line three"


def fake_github(config: str | None = None, key: tuple[str, str] | None = None) -> tuple[FakeGitHub, str]:
    """The fake GitHub with one pull request, and the App's private key."""
    private, public = key or new_app_key()
    gh = FakeGitHub(APP_ID, public, INSTALLATION, REPO)
    files = [{"filename": "app/storage.py", "status": "modified", "patch": DEMO_PATCH}]
    files += [{"filename": f"docs/{n}.txt", "status": "modified", "patch": OTHER_PATCH} for n in range(3)]
    files.append({"filename": "logo.png", "status": "modified", "patch": None})
    gh.pulls[PR] = PullRequest(PR, HEAD, "master", files)
    gh.pulls[PR].review_comments.append(human_comment())
    if config is not None:
        gh.contents[("master", ".github/revisor.yml")] = config
    gh.contents[("feature", ".github/revisor.yml")] = "review_comments: all\n"  # the head: never read
    return gh, private


def human_comment(body: str = "/revise use a context manager here", comment_id: int = COMMENT_ID) -> dict:
    return {"id": comment_id, "path": "app/storage.py", "start_line": 11, "line": 13, "side": "RIGHT",
            "body": body, "user": {"login": "Codertocat", "type": "User"}}


def fixture_payload(relative: str) -> dict:
    return json.loads(shared_path(f"fixtures/github-webhooks/{relative}").read_text())


def review_comment_payload(body: str = "/revise use a context manager here", sender: str = "User",
                           comment_id: int = COMMENT_ID) -> dict:
    payload = copy.deepcopy(fixture_payload("pull_request_review_comment/created.payload.json"))
    payload["comment"].update(human_comment(body, comment_id), start_side="RIGHT", in_reply_to_id=None,
                              commit_id=HEAD)
    payload["pull_request"].update(number=PR)
    payload["pull_request"]["head"]["sha"] = HEAD
    payload["installation"] = {"id": INSTALLATION}
    payload["sender"]["type"] = sender
    return payload


def pull_request_payload(action: str = "opened") -> dict:
    payload = copy.deepcopy(fixture_payload("pull_request/opened.payload.json"))
    payload["action"] = action
    payload["number"] = PR
    payload["pull_request"].update(number=PR, draft=False)
    payload["pull_request"]["head"]["sha"] = HEAD
    payload["installation"] = {"id": INSTALLATION}
    return payload


def signed(payload: dict | bytes, event: str, delivery: str, secret: str = SECRET) -> tuple[bytes, dict]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return body, {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery, "X-Hub-Signature-256": signature,
                  "Content-Type": "application/json"}


def replies(gh: FakeGitHub, comment_id: int = COMMENT_ID) -> list[dict]:
    return [c for c in gh.pulls[PR].review_comments if c.get("in_reply_to_id") == comment_id]


def write_event(tmp: Path, payload: dict) -> Path:
    path = tmp / "event.json"
    path.write_text(json.dumps(payload))
    return path
