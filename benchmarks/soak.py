"""The bot for a long while: `revisor serve`, two `revisor worker` processes, Redis and `vllm serve`,
with review comments and pushes arriving at a steady rate and faults injected at random.

    python -m benchmarks.soak [--minutes 30] [--per-minute 6] [--seed 0]

Faults, each with a chance every tick: a worker SIGKILLed (and another started), GitHub answering
502 after creating a reply, a secondary rate limit, `vllm serve` stopped and started again. At the
end every comment must have exactly one reply and every push's job must be done. The resident
memory, open files and threads of the service and its workers, and Redis's keys and memory, are
measured once the first answers are in and again at the end, and printed side by side.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import tempfile
import time
from pathlib import Path

import httpx
import psutil
import redis

from benchmarks.faults import SERVED, Bench
from revisor.model.embedded import prepare_embedded_model
from tests import bot_scenario as s
from tests.github_server import BASE_SHA
from tests.servers import vllm_server, wait_until


def resources(processes: list, redis_url: str) -> dict[str, float]:
    """Summed over the service's processes (their children too), and Redis's own figures."""
    rss = files = threads = 0
    for process in processes:
        for each in [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]:
            rss += each.memory_info().rss
            files += each.num_fds()
            threads += each.num_threads()
    info = redis.Redis.from_url(redis_url).info()
    return {"resident memory (MiB)": rss / 2**20, "open files": files, "threads": threads,
            "Redis keys": redis.Redis.from_url(redis_url).dbsize(),
            "Redis memory (MiB)": info["used_memory"] / 2**20}


def push(bench: Bench, n: int) -> str:
    """A push that changes nothing Revisor reviews, and its `synchronize` delivery."""
    pull = bench.gh.pulls[s.PR]
    old, new = pull.head_sha, f"{n:040x}"
    bench.gh.compares[(old, new)] = []
    bench.gh.compares[(BASE_SHA, new)] = pull.files
    pull.head_sha = new
    payload = s.pull_request_payload("synchronize")
    payload["pull_request"]["head"]["sha"] = new
    delivery = f"soak-push-{n}"
    body, headers = s.signed(payload, "pull_request", delivery)
    answer = httpx.post(f"{bench.serve.url}/api/github/webhooks", content=body, headers=headers, timeout=10)
    assert answer.status_code == 202, answer.text
    return delivery


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--per-minute", type=float, default=6.0, help="deliveries a minute")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.minutes <= 0 or args.per_minute <= 0:
        parser.error("--minutes and --per-minute must be above 0")
    rng = random.Random(args.seed)
    logs = Path(tempfile.mkdtemp(prefix="revisor-soak-"))
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{(os.cpu_count() or 1) - 1}")
    bench = Bench(logs)
    # Comments keep coming on the first head's lines after pushes: its diff stays readable. And
    # every comment is answered: far more than the 50 answers a pull request gets by default.
    bench.gh.compares[(BASE_SHA, s.HEAD)] = bench.gh.pulls[s.PR].files
    bench.gh.contents[("master", ".github/revisor.yml")] += "max_answers_per_pull_request: 100000\n"
    client = redis.Redis.from_url(bench.redis_url)
    workers = [bench.worker(f"soak-{n}") for n in (1, 2)]
    faults = {"worker killed": 0, "502 after write": 0, "rate limit": 0, "model server restarted": 0}
    comments, pushes, started_workers = [], [], 2
    try:
        comments += bench.send(2)
        wait_until(lambda: bench.settled(comments), 600)  # warmed up: the model has answered
        start = resources([bench.serve, *workers], bench.redis_url)
        began, tick, n = time.monotonic(), 60.0 / args.per_minute, 0
        while time.monotonic() - began < args.minutes * 60:
            n += 1
            if n % 5 == 0:
                pushes.append(push(bench, n))
            else:
                comments += bench.send(1)
            roll = rng.random()
            if roll < 0.04:
                victim = workers.pop(rng.randrange(len(workers)))
                victim.stop(signal.SIGKILL)
                started_workers += 1
                workers.append(bench.worker(f"soak-{started_workers}"))
                faults["worker killed"] += 1
            elif roll < 0.08:
                bench.gh.fail_after_write.append(502)
                faults["502 after write"] += 1
            elif roll < 0.12:
                bench.gh.rate_limit_next.append("secondary")
                faults["rate limit"] += 1
            elif roll < 0.14:
                bench.vllm.stop()
                time.sleep(5)
                bench.vllm, _ = vllm_server(str(prepare_embedded_model()), SERVED, logs / "vllm.log",
                                            bench.vllm_port)
                faults["model server restarted"] += 1
            time.sleep(max(0.0, began + n * tick - time.monotonic()))
        wait_until(lambda: bench.settled(comments)
                   and all(client.hget("{revisor}:status", d) in (b"done", b"failed") for d in pushes), 1800)
        end = resources([bench.serve, *workers], bench.redis_url)
        minutes = (time.monotonic() - began) / 60
        replies = [len(s.replies(bench.gh, i)) for i in comments]
        pushes_failed = sum(client.hget("{revisor}:status", d) != b"done" for d in pushes)
    finally:
        for worker in workers:
            worker.stop()
        bench.close()
    print(f"{minutes:.0f} minutes; {len(comments)} comments, {len(pushes)} pushes; faults: "
          + ", ".join(f"{k} {v}" for k, v in faults.items()))
    print(f"replies: exactly one {sum(r == 1 for r in replies)}, none {sum(r == 0 for r in replies)}, "
          f"more than one {sum(r > 1 for r in replies)}; pushes not done: {pushes_failed}")
    print(f"the service and its workers (workers started in all: {started_workers}), and Redis:")
    print("| measure | at the start | at the end | end / start |")
    print("|---|---:|---:|---:|")
    for name in start:
        print(f"| {name} | {start[name]:.1f} | {end[name]:.1f} | {end[name] / start[name]:.2f} |")
    print(f"logs: {logs}")


if __name__ == "__main__":
    main()
