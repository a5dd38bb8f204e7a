"""The PVC store: a SQLite database in WAL mode on the member's volume.

Each commit is one transaction (state, version and task records together) made durable by
`synchronous=FULL` before it returns, so a crash leaves either all of it or none. Only what
changed is written: large states cost their own size, not the records'. aiosqlite runs the
database on its own thread, so the event loop never waits on disk.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import aiosqlite

from foundation_agent.stores import Commit, Snapshot, StateCorrupt, StoreUnavailable

SCHEMA = """
CREATE TABLE IF NOT EXISTS state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL,
    saved_at REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tasks (id TEXT PRIMARY KEY, body TEXT NOT NULL);
"""


class SqliteStore:
    kind = "PVC"
    max_bytes = None

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.key = str(self.path)
        self._db: aiosqlite.Connection | None = None
        self._page_size = 4096

    def size_with(self, state: str) -> int:
        return len(state.encode())  # no limit but the volume's

    def _corrupt(self, exc: Exception) -> StateCorrupt:
        return StateCorrupt(
            f"{self.path} is not a readable state database ({exc}); restore it from a backup, or"
            " delete it to start from the initial state"
        )

    async def _open(self) -> aiosqlite.Connection:
        if self._db is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreUnavailable(f"cannot create {self.path.parent}: {exc}") from None
            db = await aiosqlite.connect(self.path, isolation_level=None)
            try:
                await db.execute("PRAGMA journal_mode=WAL")
                await db.execute("PRAGMA synchronous=FULL")
                (check,) = await (await db.execute("PRAGMA quick_check")).fetchone()
                if check != "ok":
                    raise sqlite3.DatabaseError(check)
                await db.executescript(SCHEMA)
                (self._page_size,) = await (await db.execute("PRAGMA page_size")).fetchone()
            except sqlite3.DatabaseError as exc:
                await db.close()
                raise self._corrupt(exc) from None
            self._db = db
        return self._db

    async def load(self) -> Snapshot | None:
        db = await self._open()
        try:
            row = await (
                await db.execute("SELECT version, saved_at, body FROM state WHERE id = 1")
            ).fetchone()
            if row is None:
                return None
            version, saved_at, body = row
            tasks = {
                task_id: json.loads(record)
                for task_id, record in await (
                    await db.execute("SELECT id, body FROM tasks")
                ).fetchall()
            }
            state = json.loads(body)
        except (sqlite3.DatabaseError, ValueError) as exc:
            raise self._corrupt(exc) from None
        return Snapshot(int(version), state, tasks, saved_at, await self._size(db))

    async def _size(self, db: aiosqlite.Connection) -> int:
        (pages,) = await (await db.execute("PRAGMA page_count")).fetchone()
        return int(pages) * int(self._page_size)

    async def commit(self, commit: Commit) -> int:
        db = await self._open()
        try:
            await db.execute("BEGIN IMMEDIATE")
            try:
                if commit.state is not None:
                    await db.execute(
                        "INSERT INTO state (id, version, saved_at, body) VALUES (1, ?, ?, ?)"
                        " ON CONFLICT (id) DO UPDATE SET version = excluded.version,"
                        " saved_at = excluded.saved_at, body = excluded.body",
                        (commit.version, commit.saved_at, commit.state),
                    )
                else:
                    await db.execute(
                        "UPDATE state SET version = ?, saved_at = ? WHERE id = 1",
                        (commit.version, commit.saved_at),
                    )
                if commit.drop:
                    await db.executemany(
                        "DELETE FROM tasks WHERE id = ?", [(i,) for i in commit.drop]
                    )
                if commit.put:
                    await db.executemany(
                        "INSERT INTO tasks (id, body) VALUES (?, ?)"
                        " ON CONFLICT (id) DO UPDATE SET body = excluded.body",
                        [(i, json.dumps(r, separators=(",", ":"))) for i, r in commit.put.items()],
                    )
                await db.execute("COMMIT")
            except BaseException:
                await db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"writing {self.path}: {exc}") from None
        return await self._size(db)

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None
