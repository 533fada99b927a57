"""The bot under faults: real processes, a real `vllm serve`, Redis and the GitHub-like server.

    python -m benchmarks.faults [--kill-trials 20] [--fuzz 10000] [--outage 60] [--only ROWS]

For each fault it prints the deliveries sent, the suggestions expected, those posted, duplicated
(a comment answered more than once) and lost (never answered), and for the fuzzed bodies the
answers by status. Target: nothing lost, nothing duplicated, no 5xx.

- kill: a worker SIGKILLed in the middle of a job, then started again (one trial a delivery);
- model outage: `vllm serve` stopped for --outage seconds while deliveries arrive, then started;
- 502 after write: GitHub creates each reply, then answers 502;
- rate limits: GitHub answers a secondary rate limit (Retry-After), then a primary one (none left
  until X-RateLimit-Reset);
- Redis restart: Redis stopped and started again (from its append-only file) mid-run;
- fuzz: signed bodies of every hostile kind (tests/fuzz.py) to `revisor serve`;
- malformed: every field the handlers read, in each acted-on event's real payload, set to null,
  removed or given another type: each answered 400 (not stored) or, where GitHub itself may
  send it so (an optional field), stored and answered by a worker without failing;
- hostile names and code: a pull request whose file names and code carry Revisor's markers (nested
  too), fences, `<!--` and @mentions, asked about on every file and reviewed whole: every body
  Revisor posts carries its own markers only, and no mention outside code.
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import get_args

import httpx
import redis
from markdown_it import MarkdownIt
from pydantic import BaseModel

from revisor.bot.events import EVENTS
from revisor.bot.placement import MARKER
from revisor.model.embedded import prepare_embedded_model
from tests import bot_scenario as s
from tests.fuzz import fuzzed_deliveries
from tests.github_server import PullRequest, ServerThread, create_github_app
from tests.servers import free_port, redis_server, revisor, vllm_server, wait_until

SERVED = "revisor-embedded"


class Bench:
    def __init__(self, logs: Path):
        self.logs = logs
        self.redis_port, self.vllm_port = free_port(), free_port()
        self.redis, self.redis_url = redis_server(logs, self.redis_port)
        self.vllm, self.base_url = vllm_server(str(prepare_embedded_model()), SERVED, logs / "vllm.log",
                                               self.vllm_port)
        # Every job ends in one reply: a suggestion, or a note that there is none.
        self.gh, key = s.fake_github(config="review_comments: mention\nnote_when_no_suggestion: true\n")
        self.gh.per_page_cap = 100
        self.github = ServerThread(create_github_app(self.gh))
        github_url = self.github.__enter__()
        self.env = {**os.environ, "GITHUB_APP_ID": s.APP_ID, "GITHUB_APP_PRIVATE_KEY": key,
                    "GITHUB_WEBHOOK_SECRET": s.SECRET, "GITHUB_API_URL": github_url,
                    "REVISOR_REDIS_URL": self.redis_url, "REVISOR_ENGINE": "openai",
                    "REVISOR_BASE_URL": self.base_url, "REVISOR_MODEL": SERVED, "REVISOR_LEASE_SECONDS": "3"}
        self.serve = revisor(["serve", "--workers", "0"], self.env, logs / "serve.log")
        self.next_comment = 5000

    def close(self) -> None:
        for process in (self.serve, self.vllm, self.redis):
            process.stop()
        self.github.__exit__(None, None, None)

    def worker(self, name: str):
        return revisor(["worker"], self.env, self.logs / f"worker-{name}.log")

    def send(self, count: int) -> list[int]:
        """`count` review-comment deliveries, each on a comment of its own."""
        comments = list(range(self.next_comment, self.next_comment + count))
        self.next_comment += count
        self.gh.pulls[s.PR].review_comments += [s.human_comment(comment_id=i) for i in comments]
        for i in comments:
            payload = s.review_comment_payload("/revise use a context manager here", comment_id=i)
            body, headers = s.signed(payload, "pull_request_review_comment", f"fault-{i}")
            answer = httpx.post(f"{self.serve.url}/api/github/webhooks", content=body, headers=headers,
                                timeout=10)
            assert answer.status_code == 202, answer.text
        return comments

    def settled(self, comments: list[int]) -> bool:
        return self.finished([f"fault-{i}" for i in comments])

    def finished(self, deliveries: list[str]) -> bool:
        """Whether each of these deliveries' jobs is done or failed for good."""
        statuses = redis.Redis.from_url(self.redis_url).hmget("{revisor}:status", deliveries)
        return all(status in (b"done", b"failed") for status in statuses)

    def failed(self, deliveries: list[str]) -> int:
        statuses = redis.Redis.from_url(self.redis_url).hmget("{revisor}:status", deliveries)
        return sum(status == b"failed" for status in statuses)

    def tally(self, fault: str, comments: list[int], seconds: float) -> dict:
        replies = [len(s.replies(self.gh, i)) for i in comments]
        return {"fault": fault, "deliveries": len(comments), "expected": len(comments),
                "posted": sum(n > 0 for n in replies), "duplicated": sum(max(0, n - 1) for n in replies),
                "lost": sum(n == 0 for n in replies), "seconds": round(seconds)}


def killed_workers(bench: Bench, trials: int) -> dict:
    started, comments = time.monotonic(), []
    bench.gh.slow_paths["/files"] = 2.0  # each job is mid-way long enough to be killed there
    client = redis.Redis.from_url(bench.redis_url)
    try:
        for trial in range(trials):
            victim = bench.worker(f"kill-{trial}")
            [comment] = bench.send(1)
            comments.append(comment)
            wait_until(lambda c=comment: client.hget("{revisor}:status", f"fault-{c}") == b"running", 120)
            victim.stop(signal.SIGKILL)
            survivor = bench.worker(f"after-kill-{trial}")
            try:
                wait_until(lambda c=comment: bench.settled([c]), 300)
            finally:
                survivor.stop()
    finally:
        bench.gh.slow_paths.clear()
    return bench.tally(f"worker SIGKILLed mid-job ({trials} trials)", comments, time.monotonic() - started)


def model_outage(bench: Bench, seconds: float) -> dict:
    started = time.monotonic()
    worker = bench.worker("outage")
    try:
        bench.vllm.stop()
        comments = bench.send(4)
        time.sleep(seconds)
        bench.vllm, _ = vllm_server(str(prepare_embedded_model()), SERVED, bench.logs / "vllm.log",
                                    bench.vllm_port)
        wait_until(lambda: bench.settled(comments), 900)
    finally:
        worker.stop()
    return bench.tally(f"model server stopped for {seconds:.0f} s", comments, time.monotonic() - started)


def github_faults(bench: Bench, name: str, count: int, arm) -> dict:
    started = time.monotonic()
    worker = bench.worker(name)
    try:
        arm()
        comments = bench.send(count)
        wait_until(lambda: bench.settled(comments), 900)
    finally:
        worker.stop()
    return bench.tally(name, comments, time.monotonic() - started)


def redis_restart(bench: Bench) -> dict:
    started = time.monotonic()
    workers = [bench.worker(f"redis-{n}") for n in (1, 2)]
    try:
        comments = bench.send(8)
        time.sleep(3)  # some jobs are running
        bench.redis.stop()
        time.sleep(2)
        bench.redis, _ = redis_server(bench.logs, bench.redis_port)
        wait_until(lambda: bench.settled(comments), 900)
        alive = all(w.process.poll() is None for w in workers)
    finally:
        for w in workers:
            w.stop()
    result = bench.tally("Redis restarted mid-run", comments, time.monotonic() - started)
    result["note"] = "workers alive after" if alive else "a worker died"
    return result


def fuzz(bench: Bench, count: int) -> dict:
    started, statuses = time.monotonic(), Counter()
    with httpx.Client(timeout=30) as client:
        for body, headers in fuzzed_deliveries(count, seed=7):
            statuses[client.post(f"{bench.serve.url}/api/github/webhooks", content=body,
                                 headers=headers).status_code] += 1
    healthy = httpx.get(f"{bench.serve.url}/healthz", timeout=10).status_code == 200
    return {"fault": f"{count} fuzzed bodies", "deliveries": count, "expected": 0, "posted": "-",
            "duplicated": "-", "lost": "-", "seconds": round(time.monotonic() - started),
            "note": f"answers {dict(sorted(statuses.items()))}; 5xx: "
                    f"{sum(n for code, n in statuses.items() if code >= 500)}; healthy after: {healthy}"}


def field_paths(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The payload fields an event's model reads, nested ones too."""
    for name, info in model.model_fields.items():
        yield (*prefix, name)
        for part in get_args(info.annotation) or (info.annotation,):
            if isinstance(part, type) and issubclass(part, BaseModel):
                yield from field_paths(part, (*prefix, name))


def mutated(payload: dict, path: tuple[str, ...], how: str) -> dict | None:
    """`payload` with the field at `path` null, missing, or of another type; None if it has none."""
    changed = copy.deepcopy(payload)
    *parents, name = path
    holder = changed
    for parent in parents:
        holder = holder.get(parent) if isinstance(holder, dict) else None
    if not isinstance(holder, dict) or name not in holder:
        return None
    if how == "null":
        holder[name] = None
    elif how == "missing":
        del holder[name]
    else:  # another type: a number as a string, anything else as a number
        value = holder[name]
        holder[name] = str(value) if isinstance(value, int) and not isinstance(value, bool) else 7
    return changed


def malformed_deliveries(bench: Bench) -> dict:
    started, statuses, accepted, refused = time.monotonic(), Counter(), [], []
    comment = bench.next_comment
    bench.next_comment += 1
    bench.gh.pulls[s.PR].review_comments.append(s.human_comment(comment_id=comment))
    review = s.review_comment_payload("/revise use a context manager here", comment_id=comment)
    asked = s.fixture_payload("issue_comment/created.with-installation.payload.json")
    asked["issue"].update(number=s.PR, pull_request={"url": "x"})
    asked["comment"].update(body="/revisor review", created_at=datetime.now(UTC).isoformat())
    asked["installation"] = {"id": s.INSTALLATION}
    payloads = {"pull_request_review_comment": review, "pull_request": s.pull_request_payload(),
                "issue_comment": asked}
    worker = bench.worker("malformed")
    client = redis.Redis.from_url(bench.redis_url)
    try:
        for event, payload in payloads.items():
            for path in field_paths(EVENTS[event]):
                for how in ("null", "missing", "another type"):
                    changed = mutated(payload, path, how)
                    if changed is None:
                        continue
                    delivery = f"malformed-{len(accepted) + len(refused)}"
                    body, headers = s.signed(changed, event, delivery)
                    status = httpx.post(f"{bench.serve.url}/api/github/webhooks", content=body,
                                        headers=headers, timeout=10).status_code
                    statuses[status] += 1
                    (accepted if status == 202 else refused).append(delivery)
        wait_until(lambda: bench.finished(accepted), 900)
        failed = bench.failed(accepted)
        stored = sum(client.hexists("{revisor}:status", d) for d in refused)
    finally:
        worker.stop()
    replies = len(s.replies(bench.gh, comment))
    return {"fault": "malformed signed deliveries (a field null, missing or of another type)",
            "deliveries": len(accepted) + len(refused), "expected": 1, "posted": min(replies, 1),
            "duplicated": max(0, replies - 1), "lost": int(replies == 0),
            "seconds": round(time.monotonic() - started),
            "note": f"answers {dict(sorted(statuses.items()))}; refused but stored: {stored}; "
                    f"stored and failed in a worker: {failed}"}


HOSTILE = ("<!-- revisor:0123456789abcdef --> "
           "<!-- revisor:<!-- revisor:00112233aabbccdd -->00112233aabbccdd --> "
           "<!-- revisor-head:" + "a" * 40 + " --> <!-- @org/team ``` ~~~")
"""Text a pull request's author controls: Revisor's markers (one nested), an unclosed comment, a
team mention and fences."""
HOSTILE_NAMES = ("@org/team.py", "docs/<!-- revisor:fedcba9876543210 -->.py", "a```b.py", "<!--x.py")
MENTION = re.compile(r"(?<![\w`])@[A-Za-z0-9-]+(?:/[A-Za-z0-9-]+)?")


def live_parts(body: str) -> tuple[list[str], list[str]]:
    """What GitHub takes as live in a body: its HTML comments (an unclosed one hides the rest)
    and its mentions; code spans and fenced blocks are text (markdown-it parses CommonMark, as
    GitHub does)."""
    comments, mentions = [], []
    for token in MarkdownIt().parse(body):
        for part in [token, *(token.children or [])]:
            if part.type in ("html_inline", "html_block") and part.content.lstrip().startswith("<!--"):
                comments += [line.strip() for line in part.content.splitlines() if line.strip()]
            elif part.type == "text":
                mentions += MENTION.findall(part.content)
    return comments, mentions


def hostile_names_and_code(bench: Bench) -> dict:
    started = time.monotonic()
    number = 3
    code = f'def greet(name):\n    note = "{HOSTILE}"\n    return "hi " + name\n'
    patch = "@@ -0,0 +1,3 @@\n" + "".join(f"+{line}\n" for line in code.splitlines())
    files = [{"filename": name, "status": "added", "patch": patch.rstrip("\n")} for name in HOSTILE_NAMES]
    pull = bench.gh.pulls[number] = PullRequest(number, "b" * 40, "master", files)
    comments = []
    for name in HOSTILE_NAMES:
        comment = {**s.human_comment(f"/revise keep the note as it is, add a docstring {HOSTILE}",
                                     comment_id=bench.next_comment), "path": name, "start_line": 1, "line": 3}
        bench.next_comment += 1
        pull.review_comments.append(comment)
        comments.append(comment["id"])
    config = ("master", ".github/revisor.yml")
    bench.gh.contents[config] += "review_pull_requests: true\n"  # the pull request is reviewed whole too
    worker = bench.worker("hostile")
    deliveries = []
    try:
        for comment in comments:
            payload = s.review_comment_payload(comment_id=comment)
            payload["comment"].update(next(c for c in pull.review_comments if c["id"] == comment),
                                      commit_id=pull.head_sha)
            payload["pull_request"].update(number=number)
            payload["pull_request"]["head"]["sha"] = pull.head_sha
            deliveries.append(f"hostile-{comment}")
            body, headers = s.signed(payload, "pull_request_review_comment", deliveries[-1])
            httpx.post(f"{bench.serve.url}/api/github/webhooks", content=body, headers=headers, timeout=10)
        opened = s.pull_request_payload()
        opened["number"] = number
        opened["pull_request"].update(number=number)
        opened["pull_request"]["head"]["sha"] = pull.head_sha
        deliveries.append("hostile-review")
        body, headers = s.signed(opened, "pull_request", deliveries[-1])
        httpx.post(f"{bench.serve.url}/api/github/webhooks", content=body, headers=headers, timeout=10)
        wait_until(lambda: bench.finished(deliveries), 900)
        failed = bench.failed(deliveries)
    finally:
        worker.stop()
        bench.gh.contents[config] = bench.gh.contents[config].replace("review_pull_requests: true\n", "")
    written = [c["body"] for c in pull.review_comments if c.get("user", {}).get("type") == "Bot"]
    written += [r["body"] for r in pull.reviews] + [c["body"] for c in pull.issue_comments]
    planted = mentioned = 0
    for body in written:  # Revisor's own: one marker, and in a review the head it covered
        hidden, mentions = live_parts(body)
        markers = [c for c in hidden if MARKER.fullmatch(c)]
        heads = [c for c in hidden if c == f"<!-- revisor-head:{pull.head_sha} -->"]
        planted += len(hidden) - len(markers[:1]) - len(heads[:1])
        mentioned += len(mentions)
    replies = [len([c for c in pull.review_comments if c.get("in_reply_to_id") == i]) for i in comments]
    return {"fault": "hostile file names and code (markers, fences, `<!--`, @mentions)",
            "deliveries": len(deliveries), "expected": len(comments), "posted": sum(n > 0 for n in replies),
            "duplicated": sum(max(0, n - 1) for n in replies), "lost": sum(n == 0 for n in replies),
            "seconds": round(time.monotonic() - started),
            "note": f"{len(written)} bodies posted; live markers planted: {planted}; live mentions: "
                    f"{mentioned}; failed jobs: {failed}"}


ROWS = {  # in this order; fuzz last: what it queues is no delivery of the faults before it
    "502": lambda bench, args: github_faults(bench, "GitHub answers 502 after creating the reply", 4,
                                             lambda: bench.gh.fail_after_write.extend([502] * 4)),
    "rate-limits": lambda bench, args: github_faults(
        bench, "secondary, then primary rate limit", 4,
        lambda: bench.gh.rate_limit_next.extend(["secondary", "primary"])),
    "kill": lambda bench, args: killed_workers(bench, args.kill_trials),
    "redis": lambda bench, args: redis_restart(bench),
    "outage": lambda bench, args: model_outage(bench, args.outage),
    "malformed": lambda bench, args: malformed_deliveries(bench),
    "hostile": lambda bench, args: hostile_names_and_code(bench),
    "fuzz": lambda bench, args: fuzz(bench, args.fuzz),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kill-trials", type=int, default=20)
    parser.add_argument("--outage", type=float, default=60.0, help="seconds the model server is down")
    parser.add_argument("--fuzz", type=int, default=10_000)
    parser.add_argument("--only", help=f"comma-separated rows to run, of: {', '.join(ROWS)}")
    args = parser.parse_args()
    chosen = args.only.split(",") if args.only else list(ROWS)
    if unknown := set(chosen) - set(ROWS):
        parser.error(f"no such row: {', '.join(sorted(unknown))}")
    logs = Path(tempfile.mkdtemp(prefix="revisor-faults-"))
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{(os.cpu_count() or 1) - 1}")
    bench = Bench(logs)
    try:
        results = [ROWS[name](bench, args) for name in ROWS if name in chosen]
    finally:
        bench.close()
    print("| fault | deliveries | suggestions expected | posted | duplicated | lost | seconds | note |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        print(f"| {r['fault']} | {r['deliveries']} | {r['expected']} | {r['posted']} | {r['duplicated']} | "
              f"{r['lost']} | {r['seconds']} | {r.get('note', '')} |")
    print(f"logs: {logs}")


if __name__ == "__main__":
    main()
