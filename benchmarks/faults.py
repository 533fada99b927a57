"""The bot under faults: real processes, a real `vllm serve`, Redis and the GitHub-like server.

    python -m benchmarks.faults [--kill-trials 20] [--fuzz 10000] [--outage 60]

For each fault it prints the deliveries sent, the suggestions expected, those posted, duplicated
(a comment answered more than once) and lost (never answered), and for the fuzzed bodies the
answers by status. Target: nothing lost, nothing duplicated, no 5xx.

- kill: a worker SIGKILLed in the middle of a job, then started again (one trial a delivery);
- model outage: `vllm serve` stopped for --outage seconds while deliveries arrive, then started;
- 502 after write: GitHub creates each reply, then answers 502;
- rate limits: GitHub answers a secondary rate limit (Retry-After), then a primary one (none left
  until X-RateLimit-Reset);
- Redis restart: Redis stopped and started again (from its append-only file) mid-run;
- fuzz: signed bodies of every hostile kind (tests/fuzz.py) to `revisor serve`.
"""

from __future__ import annotations

import argparse
import os
import signal
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import redis

from revisor.model.embedded import prepare_embedded_model
from tests import bot_scenario as s
from tests.fuzz import fuzzed_deliveries
from tests.github_server import ServerThread, create_github_app
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
        statuses = redis.Redis.from_url(self.redis_url).hmget("{revisor}:status",
                                                              [f"fault-{i}" for i in comments])
        return all(status in (b"done", b"failed") for status in statuses)

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kill-trials", type=int, default=20)
    parser.add_argument("--outage", type=float, default=60.0, help="seconds the model server is down")
    parser.add_argument("--fuzz", type=int, default=10_000)
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="revisor-faults-"))
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{(os.cpu_count() or 1) - 1}")
    bench = Bench(logs)
    try:
        results = [
            github_faults(bench, "GitHub answers 502 after creating the reply", 4,
                          lambda: bench.gh.fail_after_write.extend([502] * 4)),
            github_faults(bench, "secondary, then primary rate limit", 4,
                          lambda: bench.gh.rate_limit_next.extend(["secondary", "primary"])),
            killed_workers(bench, args.kill_trials),
            redis_restart(bench),
            model_outage(bench, args.outage),
            fuzz(bench, args.fuzz),  # last: what it queues is no delivery of the faults above
        ]
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
