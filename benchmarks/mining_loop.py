"""The team loop of docs/training.md, end to end on a replayed repository: mine, split by time,
train, calibrate, serve as a LoRA module beside another, route a repository to it.

    python -m benchmarks.mining_loop --records ../shared/datasets/codereview-new/validation.jsonl \\
        --count 240 --dev-size 40 --output runs/mining-loop

GitHub cannot be reached from the machines this was measured on, so the repository is replayed:
each of the first COUNT records becomes a pull request in a real git repository served by the
tests' GitHub-like server (a commit with the code under review, the reviewer's comment on its
lines, a later commit with the revised code; one pull request an hour). Then the commands a team
runs: `revisor mine` over the REST API, `revisor data split --by-time`, `revisor train` on the
older pairs, `revisor calibrate` on the newest; then `vllm serve` with the new adapter and Revisor's
own as LoRA modules, and `revisor action` answering a review comment on a repository whose
`.github/revisor.yml` routes it to the new one. Prints what each step gave and took.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from revisor.training.datasets import load_dataset
from tests.github_server import FakeGitHub, PullRequest, ServerThread, create_github_app, new_app_key
from tests.repo_history import comment, commit

REPO = "team/replayed"
TOKEN = "ghp_" + "r" * 36


def replay(records: str, count: int, root: Path) -> FakeGitHub:
    """A repository whose pull requests are the first `count` review-to-revision records."""
    repo = root / "repo"
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    base = commit(repo, "start", {"README.md": "# replayed\n"})
    gh = FakeGitHub("1", new_app_key()[1], 1, REPO, git=repo, per_page_cap=100)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for number, example in enumerate(load_dataset(records).examples[:count], start=1):
        when = (start + timedelta(hours=number)).strftime("%Y-%m-%dT%H:%M:%SZ")
        path = f"src/change_{number}.{example.language.lstrip('.') or 'txt'}"
        subprocess.run(["git", "-C", str(repo), "checkout", "-q", "-B", f"pr{number}", base], check=True)
        seen = commit(repo, "for review", {path: example.code_before + "\n"})
        revised = commit(repo, "after review", {path: example.code_after + "\n"})
        lines = len(example.code_before.split("\n"))
        pull = PullRequest(number, revised, "main", [], commits=[seen, revised], created_at=when,
                           updated_at=when)
        pull.review_comments = [comment(number, number, path, lines, example.comment, seen, when,
                                        start=1 if lines > 1 else None)]
        gh.pulls[number] = pull
    return gh


def revisor(*args: str, env: dict | None = None,
            check: bool = True) -> tuple[subprocess.CompletedProcess, float]:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "revisor", *args], capture_output=True, text=True,
                            env={**os.environ, **(env or {})})
    if check and result.returncode != 0:
        sys.exit(f"revisor {' '.join(args)} failed:\n{result.stderr[-2000:]}")
    return result, time.perf_counter() - started


def serve_and_route(out: Path, adapter: Path) -> dict:
    """`vllm serve` with `adapter` as the LoRA module "shop" beside Revisor's own; a review comment
    on a repository whose `.github/revisor.yml` says `adapter: shop`, answered by `revisor action`."""
    from revisor.model.embedded import DEFAULT_ADAPTER, prepare_embedded_model
    from tests import bot_scenario as s
    from tests.servers import vllm_server

    started = time.perf_counter()
    modules = ["--enable-lora", "--max-lora-rank", "16", "--lora-modules", f"shop={adapter.resolve()}",
               f"revisor={DEFAULT_ADAPTER}"]
    server, base_url = vllm_server(str(prepare_embedded_model()), "base", out / "vllm.log", extra=modules)
    try:
        ready = time.perf_counter() - started
        gh, _ = s.fake_github(config="adapter: shop\nnote_when_no_suggestion: true\n")
        gh.tokens.add(TOKEN)
        with ServerThread(create_github_app(gh)) as url:
            event = s.write_event(out, s.review_comment_payload())
            answered, seconds = revisor("action", env={
                "GITHUB_EVENT_NAME": "pull_request_review_comment", "GITHUB_REPOSITORY": s.REPO,
                "GITHUB_EVENT_PATH": str(event), "GITHUB_API_URL": url, "INPUT_TOKEN": TOKEN,
                "REVISOR_ENGINE": "openai", "REVISOR_BASE_URL": base_url, "REVISOR_ADAPTERS": "shop,revisor"})
        [reply] = s.replies(gh)
    finally:
        server.stop()
    footer = next(line for line in reply["body"].splitlines() if "Revisor (" in line)
    return {"server_start_seconds": round(ready, 1), "action_seconds": round(seconds, 1),
            "action": answered.stdout.strip(), "footer": footer}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", help="Review-to-revision records to replay.")
    parser.add_argument("--count", type=int, default=240)
    parser.add_argument("--dev-size", type=int, default=40)
    parser.add_argument("--output", default="runs/mining-loop")
    parser.add_argument("--serve-only", action="store_true",
                        help="Only the last step, with the adapter an earlier run left in --output.")
    args = parser.parse_args()
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    if args.serve_only:
        print(json.dumps({"serve and route": serve_and_route(out, out / "adapter")}, indent=2))
        return
    if not args.records:
        parser.error("--records is required (or --serve-only)")
    gh = replay(args.records, args.count, out)
    gh.tokens.add(TOKEN)
    figures = {}
    with ServerThread(create_github_app(gh)) as url:
        mined, seconds = revisor("mine", "--repo", REPO, "--output", str(out / "pairs.jsonl"),
                                 env={"GITHUB_API_URL": url, "GITHUB_TOKEN": TOKEN})
    figures["mine"] = {"seconds": round(seconds, 1), "requests": len(gh.requests),
                       "summary": mined.stdout.strip().splitlines()}
    split, _ = revisor("data", "split", str(out / "pairs.jsonl"), "--by-time", "--dev-size",
                       str(args.dev_size), "--output", str(out / "split"))
    summary = json.loads(split.stdout)
    figures["split"] = {k: summary[k] for k in ("train", "dev", "dev_since")}
    _, seconds = revisor("train", "--data", str(out / "split" / "train.jsonl"), "--output",
                         str(out / "adapter"), "--max-length", "256", "--learning-rate", "1e-3", "--resume")
    metadata = json.loads((out / "adapter" / "revisor_train.json").read_text())
    kept = ("train_records", "too_long_skipped", "steps", "train_loss", "train_tokens_per_s")
    figures["train"] = {"seconds": round(seconds, 1), **{k: metadata[k] for k in kept}}
    # A small model on few pairs may answer no dev record exactly; calibrate then says so.
    calibrated, seconds = revisor("calibrate", "--dataset", str(out / "split" / "dev.jsonl"), "--adapter",
                                  str(out / "adapter"), "--target-precision", "0.3", check=False)
    figures["calibrate"] = {"seconds": round(seconds, 1), "output": calibrated.stdout.strip().splitlines(),
                            "error": calibrated.stderr.strip().splitlines()[-1:]}
    figures["serve and route"] = serve_and_route(out, out / "adapter")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
