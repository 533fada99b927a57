"""Durable webhook deliveries as jobs: stored before GitHub gets its answer, done once; and the
ledger of the suggestions posted, with what became of them.

`JobStore` is the seam, with two implementations: `SQLiteJobStore` (an embedded database file,
the default, for one machine) and `RedisJobStore` (a Redis stream with a consumer group, for
workers on several machines). Both lease jobs, so a job whose worker died is claimed again once
its lease runs out.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import socket
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from uuid import uuid4

from revisor.bot.outcomes import PostedSuggestion
from revisor.model.errors import RevisorError

log = logging.getLogger("revisor.jobs")

MAX_ATTEMPTS = 5
BACKOFF_BASE_S = 30.0
BACKOFF_CAP_S = 1800.0


def backoff_seconds(attempts: int, retry_after: float | None = None) -> float:
    """How long a failed job waits before its next attempt: exponential in the attempts made
    (30 s, 60 s, 120 s, 240 s: a model server down for a minute or two is waited out), with
    jitter so jobs that failed together do not come back together, and never less than the
    server asked for (`Retry-After`, the rate limit's reset)."""
    exponential = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (attempts - 1))
    return max(exponential * random.uniform(0.5, 1.0), retry_after or 0.0)


def digest(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


@dataclass(frozen=True)
class Job:
    delivery_id: str
    event: str
    payload: dict
    attempts: int
    lease: str = ""
    """This claim's token: only its holder may extend the lease or settle the job."""


class JobStore(Protocol):
    def enqueue(self, delivery_id: str, event: str, payload: bytes) -> bool:
        """Store a delivery; False if this delivery id, or this very body, was stored before (a
        redelivery, or a signed body replayed under a new id)."""
        ...

    def claim(self, lease_seconds: float) -> Job | None: ...

    def extend(self, job: Job, lease_seconds: float) -> None:
        """Keep the lease; nothing if the job is another worker's now."""
        ...

    def finish(self, job: Job, error: str | None = None, retry: bool = True,
               delay: float = 0.0) -> None:
        """Mark done, or record the error: the job is retried until MAX_ATTEMPTS, not before
        `delay` seconds, unless the error is permanent (`retry` False: running it again would
        fail the same way). Nothing if the job is another worker's now: its lease ran out."""
        ...

    def purge(self, before: float) -> int:
        """Forget the deliveries that finished (done or failed) before the time `before`; how many."""
        ...

    def counts(self) -> dict[str, int]:
        """Stored deliveries by status, for /metrics."""
        ...

    def failed(self) -> list[tuple[str, str, str]]:
        """The jobs that failed for good: delivery id, event, last error."""
        ...

    def requeue(self, delivery_id: str) -> bool:
        """Give a failed job a fresh set of attempts; False if no failed job has this id."""
        ...

    def try_lock(self, key: str, holder: str, seconds: float) -> bool:
        """Take the lock `key` for `seconds` unless someone else holds it; its holder renews it so."""
        ...

    def unlock(self, key: str, holder: str) -> None: ...

    def save_suggestion(self, posted: PostedSuggestion) -> None:
        """Record a posted suggestion, or its outcome (the same `ledger_key` again)."""
        ...

    def suggestions(self, pull_key: str | None = None) -> list[PostedSuggestion]:
        """The suggestions posted (on pull request `owner/name#number` only, when given), oldest
        first."""
        ...


@contextmanager
def locked(store: JobStore, key: str, seconds: float = 60.0, wait_s: float = 120.0):
    """Hold `key` across workers and machines while the body runs (waiting up to `wait_s` for it),
    renewed every third of `seconds` however long the body takes: a write GitHub keeps waiting on
    its rate limit must not let a second worker in."""
    holder = uuid4().hex
    deadline = time.monotonic() + wait_s
    while not store.try_lock(key, holder, seconds):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{key} stayed locked for {wait_s:.0f} s")
        time.sleep(0.05)
    done = threading.Event()

    def renew() -> None:
        while not done.wait(seconds / 3):
            try:
                store.try_lock(key, holder, seconds)
            except Exception:  # noqa: BLE001 - the store is down a moment: try again next beat
                log.exception("could not renew the lock %s", key)

    renewing = threading.Thread(target=renew, daemon=True)
    renewing.start()
    try:
        yield
    finally:
        done.set()
        renewing.join()
        store.unlock(key, holder)


HELD = "delivery_id = ? AND lease = ? AND status = 'running'"
"""A job as its lease holder sees it: still running under the holder's token."""


class SQLiteJobStore:
    def __init__(self, path: str | Path):
        self.path = str(path)
        self._local = threading.local()
        # Writers in this process take turns here rather than in SQLite's busy handler, whose
        # sleeps would add tens of milliseconds to a webhook's answer.
        self._write = threading.Lock()
        with self._db() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("""CREATE TABLE IF NOT EXISTS deliveries (
                delivery_id TEXT PRIMARY KEY, event TEXT NOT NULL, payload BLOB NOT NULL,
                status TEXT NOT NULL DEFAULT 'queued', attempts INTEGER NOT NULL DEFAULT 0,
                lease_until REAL NOT NULL DEFAULT 0, error TEXT,
                received_at REAL NOT NULL, finished_at REAL, lease TEXT)""")
            columns = {row[1] for row in db.execute("PRAGMA table_info(deliveries)")}
            for column in {"lease", "digest"} - columns:  # a store from an earlier version
                db.execute(f"ALTER TABLE deliveries ADD COLUMN {column} TEXT")
            db.execute("CREATE UNIQUE INDEX IF NOT EXISTS by_digest ON deliveries (digest)")
            db.execute("CREATE INDEX IF NOT EXISTS by_status ON deliveries (status, received_at)")
            db.execute("CREATE TABLE IF NOT EXISTS locks (key TEXT PRIMARY KEY, holder TEXT NOT NULL, "
                       "until REAL NOT NULL)")
            db.execute("CREATE TABLE IF NOT EXISTS suggestions (key TEXT PRIMARY KEY, "
                       "pull_key TEXT NOT NULL, posted_at REAL NOT NULL, data TEXT NOT NULL)")
            db.execute("CREATE INDEX IF NOT EXISTS by_pull ON suggestions (pull_key)")
            # Entries of a ledger from an earlier version, keyed by the fingerprint alone.
            db.execute("UPDATE suggestions SET key = pull_key || '/' || key WHERE instr(key, '/') = 0")

    def _db(self) -> sqlite3.Connection:
        """One connection per thread; FULL sync so a stored delivery survives a crash."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA busy_timeout=30000")
            self._local.db = db
        return db

    def enqueue(self, delivery_id: str, event: str, payload: bytes) -> bool:
        with self._write:
            cursor = self._db().execute(
                "INSERT OR IGNORE INTO deliveries (delivery_id, event, payload, received_at, digest) "
                "VALUES (?, ?, ?, ?, ?)", (delivery_id, event, payload, time.time(), digest(payload)))
        return cursor.rowcount == 1

    def claim(self, lease_seconds: float) -> Job | None:
        now = time.time()
        # A job whose worker died on its last attempt is failed, not left running for ever.
        self._db().execute(
            """UPDATE deliveries SET status = 'failed', finished_at = ?,
               error = 'its worker stopped before finishing on every attempt'
               WHERE status = 'running' AND lease_until < ? AND attempts >= ?""", (now, now, MAX_ATTEMPTS))
        row = self._db().execute(
            """UPDATE deliveries SET status = 'running', attempts = attempts + 1, lease_until = ?,
                                     lease = lower(hex(randomblob(16)))
               WHERE delivery_id = (
                 SELECT delivery_id FROM deliveries
                 WHERE status IN ('queued', 'running') AND lease_until < ? AND attempts < ?
                 ORDER BY received_at LIMIT 1)
               RETURNING delivery_id, event, payload, attempts, lease""",
            (now + lease_seconds, now, MAX_ATTEMPTS)).fetchone()
        if row is None:
            return None
        return Job(row[0], row[1], json.loads(row[2]), row[3], row[4])

    def extend(self, job: Job, lease_seconds: float) -> None:
        self._db().execute(
            f"UPDATE deliveries SET lease_until = ? WHERE {HELD}", (time.time() + lease_seconds,
                                                                    job.delivery_id, job.lease))

    def finish(self, job: Job, error: str | None = None, retry: bool = True, delay: float = 0.0) -> None:
        if error is None:
            self._db().execute(f"UPDATE deliveries SET status = 'done', error = NULL, finished_at = ? "
                               f"WHERE {HELD}", (time.time(), job.delivery_id, job.lease))
            return
        # A queued job's lease_until is the time before which it is not claimed again.
        self._db().execute(
            f"""UPDATE deliveries SET error = ?, lease_until = ?, finished_at = ?,
                status = CASE WHEN attempts >= ? OR NOT ? THEN 'failed' ELSE 'queued' END
                WHERE {HELD}""",
            (error, time.time() + delay, time.time(), MAX_ATTEMPTS, retry, job.delivery_id, job.lease))

    def counts(self) -> dict[str, int]:
        rows = self._db().execute("SELECT status, COUNT(*) FROM deliveries GROUP BY status").fetchall()
        return dict(rows)

    def failed(self) -> list[tuple[str, str, str]]:
        return self._db().execute("SELECT delivery_id, event, COALESCE(error, '') FROM deliveries "
                                  "WHERE status = 'failed' ORDER BY received_at").fetchall()

    def try_lock(self, key: str, holder: str, seconds: float) -> bool:
        now = time.time()
        with self._write:
            cursor = self._db().execute(
                """INSERT INTO locks (key, holder, until) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE
                   SET holder = excluded.holder, until = excluded.until
                   WHERE locks.until < ? OR locks.holder = excluded.holder""",
                (key, holder, now + seconds, now))
        return cursor.rowcount == 1

    def unlock(self, key: str, holder: str) -> None:
        with self._write:
            self._db().execute("DELETE FROM locks WHERE key = ? AND holder = ?", (key, holder))

    def purge(self, before: float) -> int:
        with self._write:
            return self._db().execute("DELETE FROM deliveries WHERE status IN ('done', 'failed') "
                                      "AND finished_at < ?", (before,)).rowcount

    def requeue(self, delivery_id: str) -> bool:
        with self._write:
            cursor = self._db().execute(
                "UPDATE deliveries SET status = 'queued', attempts = 0, lease_until = 0, error = NULL "
                "WHERE delivery_id = ? AND status = 'failed'", (delivery_id,))
        return cursor.rowcount == 1

    def save_suggestion(self, posted: PostedSuggestion) -> None:
        with self._write:
            self._db().execute(
                "INSERT INTO suggestions (key, pull_key, posted_at, data) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET data = excluded.data",
                (posted.ledger_key, posted.pull_key, posted.posted_at, posted.to_json()))

    def suggestions(self, pull_key: str | None = None) -> list[PostedSuggestion]:
        where, args = ("WHERE pull_key = ?", (pull_key,)) if pull_key else ("", ())
        rows = self._db().execute(f"SELECT data FROM suggestions {where} ORDER BY posted_at", args)
        return [PostedSuggestion.from_json(data) for (data,) in rows]


# Redis keys share one hash tag, so the scripts below also run on a Redis Cluster.
STREAM, GROUP = "{revisor}:jobs", "workers"
STATUS, COUNTS = "{revisor}:status", "{revisor}:counts"
ATTEMPTS, ERRORS = "{revisor}:attempts", "{revisor}:errors"
DELAYED, DELAYED_JOBS = "{revisor}:delayed", "{revisor}:delayed-jobs"  # retries waiting for their time
FAILED_JOBS = "{revisor}:failed-jobs"  # what a failed job needs to be queued again
DIGESTS = "{revisor}:digests"  # of every body stored
DIGEST_OF = "{revisor}:digest-of"  # delivery -> its body's digest
FINISHED = "{revisor}:finished"  # deliveries done or failed, by the time they finished
SUGGESTIONS = "{revisor}:suggestions"  # key -> a posted suggestion, as JSON

# A delivery is queued once: its id and its body's digest are recorded and the job added in one
# atomic step.
ENQUEUE = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 or redis.call('SISMEMBER', KEYS[3], ARGV[4]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], 'queued')
redis.call('SADD', KEYS[3], ARGV[4])
redis.call('HSET', KEYS[4], ARGV[1], ARGV[4])
redis.call('XADD', KEYS[2], '*', 'delivery_id', ARGV[1], 'event', ARGV[2], 'payload', ARGV[3])
return 1
"""

# Only the worker that holds a job may settle it or extend its lease: after its lease ran out,
# the job belongs to whichever worker claimed it next.
HOLDS = """
local function holds(stream, group, entry, consumer)
  local pending = redis.call('XPENDING', stream, group, entry, entry, 1)
  return #pending == 1 and pending[1][2] == consumer
end
"""
EXTEND = HOLDS + """
if not holds(KEYS[1], ARGV[1], ARGV[2], ARGV[3]) then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'JUSTID')
return 1
"""
SETTLE = HOLDS + """
if not holds(KEYS[1], ARGV[1], ARGV[2], ARGV[3]) then return 0 end
local fields = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])[1][2]
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
if ARGV[5] == 'retry' then
  redis.call('ZADD', KEYS[5], ARGV[7], ARGV[4])
  redis.call('HSET', KEYS[6], ARGV[4], cjson.encode(fields))
  redis.call('HSET', KEYS[2], ARGV[4], 'queued')
else
  redis.call('HSET', KEYS[2], ARGV[4], ARGV[5])
  redis.call('HINCRBY', KEYS[3], ARGV[5], 1)
  redis.call('ZADD', KEYS[8], ARGV[8], ARGV[4])
  if ARGV[5] == 'failed' then redis.call('HSET', KEYS[7], ARGV[4], cjson.encode(fields)) end
end
if ARGV[6] ~= '' then redis.call('HSET', KEYS[4], ARGV[4], ARGV[6]) end
return 1
"""


# A failed job goes back into the stream with its attempts forgotten.
REQUEUE = """
local fields = redis.call('HGET', KEYS[1], ARGV[1])
if not fields then return 0 end
redis.call('XADD', KEYS[2], '*', unpack(cjson.decode(fields)))
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HSET', KEYS[4], ARGV[1], 'queued')
redis.call('HINCRBY', KEYS[5], 'failed', -1)
redis.call('ZREM', KEYS[6], ARGV[1])
return 1
"""

# Deliveries that finished long ago are forgotten, a batch at a time.
PURGE = """
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, 500)
for _, delivery in ipairs(old) do
  local status = redis.call('HGET', KEYS[2], delivery)
  if status then redis.call('HINCRBY', KEYS[3], status, -1) end
  local digest = redis.call('HGET', KEYS[4], delivery)
  if digest then redis.call('SREM', KEYS[5], digest) end
  for i = 2, 8 do if i ~= 3 and i ~= 5 then redis.call('HDEL', KEYS[i], delivery) end end
  redis.call('ZREM', KEYS[1], delivery)
end
return #old
"""

# Take a lock that is free, or renew it for the one who holds it.
LOCK = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# Retries whose time has come go back into the stream, each once.
PROMOTE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
for _, delivery in ipairs(due) do
  redis.call('XADD', KEYS[3], '*', unpack(cjson.decode(redis.call('HGET', KEYS[2], delivery))))
  redis.call('ZREM', KEYS[1], delivery)
  redis.call('HDEL', KEYS[2], delivery)
end
return #due
"""


class RedisJobStore:
    """Jobs in a Redis stream read by one consumer group; a job's lease is its idle time in the
    group's pending list, so a dead worker's job is taken over with XAUTOCLAIM.

    Run Redis with `--appendonly yes --appendfsync always` so that a delivery GitHub was told is
    stored survives a crash of the Redis server too.
    """

    def __init__(self, url: str):
        import redis

        try:
            self.redis = redis.Redis.from_url(url)
            self.redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):  # else the group exists: another process made it
                raise
        except (ValueError, redis.RedisError) as error:
            raise RevisorError(f"REVISOR_REDIS_URL: cannot use Redis at {url} ({error})") from None
        self._process = f"{socket.gethostname()}-{os.getpid()}-{uuid4().hex[:8]}"
        self._cursor = "0-0"
        """Where XAUTOCLAIM goes on looking for jobs whose lease ran out: each call scans a few
        pending entries, so starting from the beginning every time would never reach the rest."""
        (self._enqueue, self._extend, self._settle, self._promote, self._requeue, self._lock, self._unlock,
         self._purge) = (self.redis.register_script(s)
                         for s in (ENQUEUE, EXTEND, SETTLE, PROMOTE, REQUEUE, LOCK, UNLOCK, PURGE))

    @property
    def consumer(self) -> str:
        """One consumer per worker thread: the lease is the pair (entry, consumer), its token
        "ENTRY CONSUMER", so a thread whose lease ran out cannot settle the job another thread of
        its process took over."""
        return f"{self._process}-{threading.get_ident()}"

    def enqueue(self, delivery_id: str, event: str, payload: bytes) -> bool:
        return self._enqueue(keys=[STATUS, STREAM, DIGESTS, DIGEST_OF],
                             args=[delivery_id, event, payload, digest(payload)]) == 1

    def claim(self, lease_seconds: float) -> Job | None:
        self._promote(keys=[DELAYED, DELAYED_JOBS, STREAM], args=[time.time()])
        while True:
            # First a job whose holder let its lease run out, then a new one.
            cursor, entries, *_ = self.redis.xautoclaim(
                STREAM, GROUP, self.consumer, int(lease_seconds * 1000), start_id=self._cursor, count=1)
            self._cursor = cursor.decode() if isinstance(cursor, bytes) else cursor
            if not entries:
                read = self.redis.xreadgroup(GROUP, self.consumer, {STREAM: ">"}, count=1)
                entries = read[0][1] if read else []
            if not entries:
                return None
            entry, fields = entries[0]
            delivery = fields[b"delivery_id"].decode()
            attempts = self.redis.hincrby(ATTEMPTS, delivery, 1)
            if attempts <= MAX_ATTEMPTS:
                self.redis.hset(STATUS, delivery, "running")
                return Job(delivery, fields[b"event"].decode(), json.loads(fields[b"payload"]), attempts,
                           f"{entry.decode()} {self.consumer}")
            self._finish(delivery, entry.decode(), self.consumer, "failed",
                         "its worker stopped before finishing on every attempt")

    def extend(self, job: Job, lease_seconds: float) -> None:
        entry, consumer = job.lease.split(" ", 1)  # the claimer's, whichever thread beats for it
        self._extend(keys=[STREAM], args=[GROUP, entry, consumer])

    def finish(self, job: Job, error: str | None = None, retry: bool = True, delay: float = 0.0) -> None:
        if error is None:
            outcome = "done"
        else:
            attempts = int(self.redis.hget(ATTEMPTS, job.delivery_id) or 0)
            outcome = "failed" if attempts >= MAX_ATTEMPTS or not retry else "retry"
        self._finish(job.delivery_id, *job.lease.split(" ", 1), outcome, error or "", time.time() + delay)

    def _finish(self, delivery_id: str, entry: str, consumer: str, outcome: str, error: str,
                not_before: float = 0.0) -> None:
        """Settle the job if `consumer` still holds its stream entry."""
        self._settle(keys=[STREAM, STATUS, COUNTS, ERRORS, DELAYED, DELAYED_JOBS, FAILED_JOBS, FINISHED],
                     args=[GROUP, entry, consumer, delivery_id, outcome, error, not_before, time.time()])

    def counts(self) -> dict[str, int]:
        running = self.redis.xpending(STREAM, GROUP)["pending"]
        settled = {k.decode(): int(v) for k, v in self.redis.hgetall(COUNTS).items()}
        queued = self.redis.xlen(STREAM) - running + self.redis.zcard(DELAYED)
        counts = {"queued": queued, "running": running, **settled}
        return {status: n for status, n in counts.items() if n}

    def failed(self) -> list[tuple[str, str, str]]:
        jobs = []
        for delivery, fields in sorted(self.redis.hgetall(FAILED_JOBS).items()):
            flat = json.loads(fields)
            event = dict(zip(flat[::2], flat[1::2], strict=True))["event"]
            error = (self.redis.hget(ERRORS, delivery) or b"").decode()
            jobs.append((delivery.decode(), event, error))
        return jobs

    def try_lock(self, key: str, holder: str, seconds: float) -> bool:
        return self._lock(keys=[f"{{revisor}}:lock:{key}"], args=[holder, int(seconds * 1000)]) == 1

    def unlock(self, key: str, holder: str) -> None:
        self._unlock(keys=[f"{{revisor}}:lock:{key}"], args=[holder])

    def save_suggestion(self, posted: PostedSuggestion) -> None:
        with self.redis.pipeline() as pipe:  # MULTI/EXEC: the entry and its index together
            pipe.hdel(SUGGESTIONS, posted.key)  # its entry in a ledger of an earlier version, if any
            pipe.srem(f"{SUGGESTIONS}:{posted.pull_key}", posted.key)
            pipe.hset(SUGGESTIONS, posted.ledger_key, posted.to_json())
            pipe.sadd(f"{SUGGESTIONS}:{posted.pull_key}", posted.ledger_key)
            pipe.execute()

    def suggestions(self, pull_key: str | None = None) -> list[PostedSuggestion]:
        if pull_key:
            keys = list(self.redis.smembers(f"{SUGGESTIONS}:{pull_key}"))
            values = self.redis.hmget(SUGGESTIONS, keys) if keys else []
        else:
            values = self.redis.hvals(SUGGESTIONS)
        return sorted((PostedSuggestion.from_json(v) for v in values if v), key=lambda s: s.posted_at)

    def requeue(self, delivery_id: str) -> bool:
        return self._requeue(keys=[FAILED_JOBS, STREAM, ATTEMPTS, STATUS, COUNTS, FINISHED],
                             args=[delivery_id]) == 1

    def purge(self, before: float) -> int:
        purged = 0
        while batch := self._purge(keys=[FINISHED, STATUS, COUNTS, DIGEST_OF, DIGESTS, ATTEMPTS, ERRORS,
                                         FAILED_JOBS], args=[before]):
            purged += batch
        return purged


def open_store(database: str, redis_url: str | None) -> JobStore:
    """Redis when a URL is configured (several machines), else the SQLite file."""
    return RedisJobStore(redis_url) if redis_url else SQLiteJobStore(database)
