"""Hostile webhook deliveries, signed as GitHub signs them: the webhook service must answer each
with a 2xx or a 4xx, never a 5xx."""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Iterator

from tests import bot_scenario as s

EVENTS = ("pull_request_review_comment", "pull_request", "issue_comment", "ping", "push", "installation")
KEYS = ("action", "sender", "comment", "issue", "pull_request", "body", "type", "login", "number",
        "head", "sha", "repository", "installation", "id", "line", "path", "full_name")


def random_value(rng: random.Random, depth: int = 0) -> object:
    kind = rng.choice(("str", "int", "none", "bool", "float", "list", "dict")[: 7 if depth < 4 else 5])
    if kind == "str":
        return rng.choice(("", "created", "synchronize", "/revisor review", "/revise x", "Bot", "[bot]",
                           "\\u0000", "é" * 3, "x" * rng.randint(0, 50)))
    if kind == "int":
        return rng.choice((0, -1, 2**63, rng.randint(-5, 5)))
    if kind in ("none", "bool", "float"):
        return {"none": None, "bool": rng.random() < 0.5, "float": rng.choice((1.5, -0.0, 1e308))}[kind]
    if kind == "list":
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(KEYS): random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def scrambled(rng: random.Random, payload: object) -> object:
    """A real payload with some values replaced by values of other types."""
    if isinstance(payload, dict):
        return {k: random_value(rng, 2) if rng.random() < 0.15 else scrambled(rng, v)
                for k, v in payload.items()}
    if isinstance(payload, list):
        return [scrambled(rng, v) for v in payload]
    return payload


def fuzzed_deliveries(count: int, seed: int = 0, max_bytes: int = 200_000) -> Iterator[tuple[bytes, dict]]:
    """`count` (body, headers) pairs of many kinds: random JSON, real payloads with wrong types,
    truncated, oversized, deeply nested, non-UTF-8, and a few with a wrong signature."""
    rng = random.Random(seed)
    real = [s.review_comment_payload(), s.pull_request_payload(),
            s.fixture_payload("issue_comment/created.with-installation.payload.json")]
    for n in range(count):
        kind = n % 7
        if kind == 0:
            body = json.dumps(random_value(rng)).encode()
        elif kind == 1:
            body = json.dumps(scrambled(rng, copy.deepcopy(rng.choice(real)))).encode()
        elif kind == 2:
            whole = json.dumps(rng.choice(real)).encode()
            body = whole[: rng.randint(0, len(whole) - 1)]
        elif kind == 3:
            body = b'{"action": "created", "pad": "' + b"x" * (max_bytes + rng.randint(1, 1000)) + b'"}'
        elif kind == 4:
            depth = rng.choice((10, 1000, 100_000))
            body = b"[" * depth + b"]" * depth
        elif kind == 5:
            body = bytes(rng.randrange(256) for _ in range(rng.randint(1, 200)))
        else:
            body = json.dumps(scrambled(rng, copy.deepcopy(rng.choice(real)))).encode()
        _, headers = s.signed(body, rng.choice(EVENTS), f"fuzz-{seed}-{n}")
        if n % 50 == 49:
            headers["X-Hub-Signature-256"] = "sha256=" + "0" * 64
        yield body, headers
