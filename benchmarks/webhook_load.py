"""Load on the webhook service: N signed deliveries at a fixed rate, acknowledgement latency.

    python benchmarks/webhook_load.py --count 500 --rate 100

Without --url it starts `revisor serve --workers 0` itself (a fresh database, a generated
secret), so only the acknowledgement path is measured: verify, store durably, answer. It prints
latency p50/p99/max, the answers by status, and how many deliveries the database holds, each once.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

FIXTURE = Path("../shared/fixtures/github-webhooks/pull_request_review_comment/created.payload.json")


def payload(i: int) -> dict:
    base = json.loads(FIXTURE.read_text()) if FIXTURE.is_file() else {
        "action": "created", "comment": {"path": "a.py", "line": 1}, "pull_request": {"number": 1},
        "repository": {"full_name": "o/r"}, "sender": {"login": "u", "type": "User"}}
    event = copy.deepcopy(base)
    event["comment"]["id"] = i
    event["comment"]["body"] = f"/revise load test comment {i}"
    event["installation"] = {"id": 1}
    event["sender"]["type"] = "User"
    return event


async def send(url: str, secret: str, count: int, rate: float) -> tuple[list[float], Counter]:
    latencies: list[float] = []
    statuses: Counter = Counter()
    bodies = [json.dumps(payload(i)).encode() for i in range(count)]
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        async def one(i: int, at: float) -> None:
            await asyncio.sleep(max(0.0, at - time.perf_counter()))
            body = bodies[i]
            signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            headers = {"X-GitHub-Event": "pull_request_review_comment", "X-GitHub-Delivery": f"load-{i}",
                       "X-Hub-Signature-256": signature, "Content-Type": "application/json"}
            start = time.perf_counter()
            response = await client.post(f"{url}/api/github/webhooks", content=body, headers=headers)
            latencies.append((time.perf_counter() - start) * 1000)
            statuses[response.status_code] += 1

        t0 = time.perf_counter() + 0.5
        await asyncio.gather(*(one(i, t0 + i / rate) for i in range(count)))
    return latencies, statuses


def start_server(database: Path, secret: str, port: int) -> subprocess.Popen:
    env = {**os.environ, "GITHUB_WEBHOOK_SECRET": secret, "GITHUB_APP_ID": "1",
           "GITHUB_APP_PRIVATE_KEY": "unused: no worker runs", "REVISOR_DATABASE": str(database)}
    command = [sys.executable, "-m", "revisor", "serve", "--workers", "0", "--port", str(port)]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("revisor serve did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="a running `revisor serve` (then pass --secret and --database)")
    parser.add_argument("--secret", default=os.environ.get("GITHUB_WEBHOOK_SECRET"))
    parser.add_argument("--database", help="its database file, to count what was stored")
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--rate", type=float, default=100.0, help="deliveries per second")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()

    server = None
    if args.url is None:
        args.secret = secrets.token_hex(20)
        args.database = str(Path(tempfile.mkdtemp()) / "load.db")
        server = start_server(Path(args.database), args.secret, args.port)
        args.url = f"http://127.0.0.1:{args.port}"
    try:
        latencies, statuses = asyncio.run(send(args.url, args.secret, args.count, args.rate))
    finally:
        if server is not None:
            server.terminate()
            server.wait()
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    print(f"deliveries sent: {args.count} at {args.rate:g}/s")
    print(f"answers: {dict(sorted(statuses.items()))}")
    print(f"ack latency ms: p50 {statistics.median(ordered):.1f}  p99 {p99:.1f}  max {ordered[-1]:.1f}")
    if args.database:
        with sqlite3.connect(args.database) as db:
            stored, distinct = db.execute(
                "SELECT COUNT(*), COUNT(DISTINCT delivery_id) FROM deliveries WHERE delivery_id LIKE 'load-%'"
            ).fetchone()
        print(f"stored: {stored} ({distinct} distinct) of {args.count}")


if __name__ == "__main__":
    main()
