"""Durable webhook deliveries as jobs: stored before GitHub gets its answer, done once.

`JobStore` is the seam: `SQLiteJobStore` (an embedded database file, the default) implements it
with leases, so a job whose worker died is claimed again once its lease runs out; a distributed
queue can implement the same four methods.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class Job:
    delivery_id: str
    event: str
    payload: dict
    attempts: int


class JobStore(Protocol):
    def enqueue(self, delivery_id: str, event: str, payload: bytes) -> bool:
        """Store a delivery; False if this delivery id was stored before (a redelivery)."""
        ...

    def claim(self, lease_seconds: float) -> Job | None: ...

    def extend(self, delivery_id: str, lease_seconds: float) -> None: ...

    def finish(self, delivery_id: str, error: str | None = None) -> None:
        """Mark done, or record the error: the job is retried until MAX_ATTEMPTS."""
        ...

    def counts(self) -> dict[str, int]:
        """Stored deliveries by status, for /metrics."""
        ...


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
                received_at REAL NOT NULL, finished_at REAL)""")
            db.execute("CREATE INDEX IF NOT EXISTS by_status ON deliveries (status, received_at)")

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
                "INSERT OR IGNORE INTO deliveries (delivery_id, event, payload, received_at) "
                "VALUES (?, ?, ?, ?)", (delivery_id, event, payload, time.time()))
        return cursor.rowcount == 1

    def claim(self, lease_seconds: float) -> Job | None:
        now = time.time()
        row = self._db().execute(
            """UPDATE deliveries SET status = 'running', attempts = attempts + 1, lease_until = ?
               WHERE delivery_id = (
                 SELECT delivery_id FROM deliveries
                 WHERE (status = 'queued' OR (status = 'running' AND lease_until < ?))
                   AND attempts < ?
                 ORDER BY received_at LIMIT 1)
               RETURNING delivery_id, event, payload, attempts""",
            (now + lease_seconds, now, MAX_ATTEMPTS)).fetchone()
        if row is None:
            return None
        return Job(row[0], row[1], json.loads(row[2]), row[3])

    def extend(self, delivery_id: str, lease_seconds: float) -> None:
        self._db().execute(
            "UPDATE deliveries SET lease_until = ? WHERE delivery_id = ? AND status = 'running'",
                           (time.time() + lease_seconds, delivery_id))

    def finish(self, delivery_id: str, error: str | None = None) -> None:
        if error is None:
            self._db().execute(
                "UPDATE deliveries SET status = 'done', error = NULL, finished_at = ? WHERE delivery_id = ?",
                (time.time(), delivery_id))
            return
        self._db().execute(
            """UPDATE deliveries SET error = ?, lease_until = 0,
               status = CASE WHEN attempts >= ? THEN 'failed' ELSE 'queued' END
               WHERE delivery_id = ?""", (error, MAX_ATTEMPTS, delivery_id))

    def counts(self) -> dict[str, int]:
        rows = self._db().execute("SELECT status, COUNT(*) FROM deliveries GROUP BY status").fetchall()
        return dict(rows)
