"""Deliveries per minute with one and with two `revisor worker` processes sharing one `vllm serve`.

    python -m benchmarks.worker_scaling --count 48

Starts a Redis server, `vllm serve` with the embedded model on the CPU, the GitHub-like server of
the tests and `revisor serve --workers 0`. Then, for one worker and for two, it posts COUNT
review-comment deliveries at once (each asks for a different change) and times until the last is
done. Every comment must get exactly one reply. Prints both rates and their ratio.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import httpx
import redis

from revisor.model.embedded import prepare_embedded_model
from tests import bot_scenario as s
from tests.github_server import ServerThread, create_github_app
from tests.servers import redis_server, revisor, vllm_server, wait_until

REQUESTS = ["use a context manager here", "rename f to handle", "add a docstring",
            "write the file atomically", "pass indent=2 to json.dumps", "add type hints",
            "handle OSError and log it", "use pathlib instead of open"]


def deliveries(count: int, offset: int) -> list[tuple[int, bytes, dict]]:
    out = []
    for n in range(count):
        comment_id = offset + n
        payload = s.review_comment_payload(f"/revise {REQUESTS[n % len(REQUESTS)]}", comment_id=comment_id)
        out.append((comment_id, *s.signed(payload, "pull_request_review_comment", f"bench-{comment_id}")))
    return out


def run(workers: int, count: int, offset: int, serve_url: str, env: dict, gh, logs: Path) -> float:
    """Seconds from the first delivery to the last one done, with `workers` worker processes."""
    batch = deliveries(count, offset)
    gh.pulls[s.PR].review_comments += [s.human_comment(comment_id=i) for i, _, _ in batch]
    processes = [revisor(["worker"], env, logs / f"worker-{workers}-{n}.log") for n in range(workers)]
    store = redis.Redis.from_url(env["REVISOR_REDIS_URL"])

    def done() -> int:
        return int(store.hget("{revisor}:counts", "done") or 0)

    done_before = done()
    try:
        started = time.perf_counter()
        for _, body, headers in batch:
            answer = httpx.post(f"{serve_url}/api/github/webhooks", content=body, headers=headers)
            assert answer.status_code == 202, answer.text
        wait_until(lambda: done() == done_before + count, 1800)
        seconds = time.perf_counter() - started
    finally:
        for process in processes:
            process.stop()
    replies = [len(s.replies(gh, i)) for i, _, _ in batch]
    assert replies == [1] * count, f"replies per comment: {replies}"
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=48, help="deliveries per measurement")
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="revisor-scaling-"))
    # vLLM on the CPU keeps a core for its front end unless told otherwise; the model gets them all,
    # as on a box that serves the model (the workers mostly wait on it).
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{(os.cpu_count() or 1) - 1}")
    redis_process, redis_url = redis_server(logs)
    vllm, base_url = vllm_server(str(prepare_embedded_model()), "revisor-embedded", logs / "vllm.log")
    gh, key = s.fake_github(config="review_comments: mention\n")
    gh.per_page_cap = 100  # GitHub's largest page; the tests' small pages would time pagination
    with ServerThread(create_github_app(gh)) as github_url:
        env = {**os.environ, "GITHUB_APP_ID": s.APP_ID, "GITHUB_APP_PRIVATE_KEY": key,
               "GITHUB_WEBHOOK_SECRET": s.SECRET, "GITHUB_API_URL": github_url,
               "REVISOR_REDIS_URL": redis_url, "REVISOR_ENGINE": "openai", "REVISOR_BASE_URL": base_url,
               "REVISOR_MODEL": "revisor-embedded"}
        serve = revisor(["serve", "--workers", "0"], env, logs / "serve.log")
        try:
            run(1, 2, 1000, serve.url, env, gh, logs)  # warm-up: the model server's first requests
            one = run(1, args.count, 1002, serve.url, env, gh, logs)
            two = run(2, args.count, 1002 + args.count, serve.url, env, gh, logs)
        finally:
            for process in (serve, vllm, redis_process):
                process.stop()
    for workers, seconds in ((1, one), (2, two)):
        print(f"{workers} worker(s): {args.count} deliveries in {seconds:.1f} s = "
              f"{args.count / seconds * 60:.1f} per minute")
    print(f"two workers / one worker: {one / two:.2f}x deliveries per minute; every comment answered once")
    print(f"logs: {logs}")


if __name__ == "__main__":
    main()
