"""One writer per target: a lock per (target system, entity), held in the sync ledger's database.

Rules:

* A load holds the lock of its (target, entity), e.g. ``workbooks``/``people``, around everything that
  decides or makes writes: lookups, plan, writes and ledger records. Two runs writing the same entity never
  interleave, whichever process, Dagster instance, schedule or backfill started them, as long as they share
  the ledger (which they must anyway: it is what links Outreach and Workbooks records).
* PostgreSQL: a session-level advisory lock on a dedicated connection. The server releases it when the
  connection ends, so a killed holder frees it by itself.
* SQLite (no advisory locks): a row with a lease. The holder renews its heartbeat from a thread; a row
  whose heartbeat is older than its lease belongs to a dead process and is taken over, and so is a row
  whose holder ran on this host under a pid that no longer exists (no need to wait for the lease).
* Either way the row ``sync_writer_lock`` names the holder (run id, pid, host, since when), so a waiting
  writer can say what it waits for.
* A busy lock is waited for (``LockPolicy.WAIT``, up to ``max_wait`` seconds) or refused at once
  (``LockPolicy.FAIL_FAST``); both end in a typed error naming the holder.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from outreach_pipeline.engine.ledger_schema import writer_lock as lock_table

logger = logging.getLogger(__name__)

#: The first key of every advisory lock taken here (the second is the target/entity hash), so these locks
#: cannot collide with the ledger's transaction locks, which use the single-key form.
_ADVISORY_CLASS = 0x0757_1C0C


class LockPolicy(StrEnum):
    """What a writer does when another one holds the lock."""

    WAIT = "wait"
    FAIL_FAST = "fail_fast"


@dataclass(frozen=True)
class LockHolder:
    """Who holds (or last held) a writer lock."""

    run_id: str
    pid: int
    host: str
    acquired_at: datetime
    heartbeat_at: datetime

    def describe(self) -> str:
        return (f"run {self.run_id} (pid {self.pid} on {self.host}) since "
                f"{self.acquired_at:%Y-%m-%d %H:%M:%S} UTC")


class WriterLockBusy(Exception):
    """Another run holds the writer lock (fail-fast policy, or the wait ran out).

    Attributes:
        target, entity: The lock.
        holder: Who holds it, when known.
        waited: Seconds spent waiting (0 when failing fast).
    """

    def __init__(self, target: str, entity: str, holder: LockHolder | None, waited: float) -> None:
        self.target = target
        self.entity = entity
        self.holder = holder
        self.waited = waited
        who = holder.describe() if holder else "another run"
        after = f" after waiting {waited:.0f}s" if waited else ""
        super().__init__(f"the writer lock on {target}/{entity} is held by {who}; gave up{after}")


class WriterLockLost(Exception):
    """The lease expired while held (the heartbeat could not renew it) and another writer took it over."""


@dataclass(frozen=True)
class LockSettings:
    """How to wait. Kept apart from Dagster so a typed settings object can carry it later."""

    policy: LockPolicy = LockPolicy.WAIT
    max_wait: float = 1800.0
    lease_seconds: float = 60.0
    poll_seconds: float = 1.0
    report_every: float = 30.0


WaitReporter = Callable[[str], None]


@contextmanager
def hold_writer_lock(
    engine: Engine,
    *,
    target: str,
    entity: str,
    run_id: str,
    settings: LockSettings | None = None,
    on_wait: WaitReporter | None = None,
) -> Iterator[LockHolder]:
    """Hold the writer lock of ``target``/``entity`` for the block.

    Args:
        engine: The sync ledger's engine (the ledger creates the lock table with its others).
        target, entity: What is written, e.g. ``"workbooks"``, ``"people"``.
        run_id: The run taking the lock (shown to waiting writers).
        settings: Policy, max wait, lease.
        on_wait: Told (a one-line message) when the lock is busy and then every ``report_every`` seconds.

    Raises:
        WriterLockBusy: The lock stayed busy (fail-fast, or past ``max_wait``).
        WriterLockLost: On leaving the block, when the SQLite lease was lost meanwhile.
    """
    settings = settings or LockSettings()
    lock = _PostgresLock(engine, target, entity) if engine.dialect.name == "postgresql" else _SqliteLock(
        engine, target, entity, settings.lease_seconds
    )
    me = LockHolder(run_id=run_id, pid=os.getpid(), host=socket.gethostname(),
                    acquired_at=_now(), heartbeat_at=_now())
    started = time.monotonic()
    reported_at: float | None = None
    while True:
        holder = lock.try_acquire(me)
        if holder is None:
            break
        waited = time.monotonic() - started
        if settings.policy is LockPolicy.FAIL_FAST or waited >= settings.max_wait:
            raise WriterLockBusy(target, entity, holder, waited)
        if reported_at is None or time.monotonic() - reported_at >= settings.report_every:
            reported_at = time.monotonic()
            message = (f"waiting for the writer lock on {target}/{entity}: held by {holder.describe()}; "
                       f"waited {waited:.0f}s of at most {settings.max_wait:.0f}s")
            logger.warning(message)
            if on_wait is not None:
                on_wait(message)
        time.sleep(min(settings.poll_seconds, max(settings.max_wait - waited, 0.01)))
    if reported_at is not None:
        logger.warning("got the writer lock on %s/%s after %.0fs", target, entity, time.monotonic() - started)
    try:
        yield me
    finally:
        lock.release()


class _SqliteLock:
    """A lock row with a lease renewed by a heartbeat thread."""

    def __init__(self, engine: Engine, target: str, entity: str, lease_seconds: float) -> None:
        self.engine = engine
        self.target = target
        self.entity = entity
        self.lease = lease_seconds
        self.token = uuid.uuid4().hex
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _where(self) -> sa.ColumnElement[bool]:
        return sa.and_(lock_table.c.target == self.target, lock_table.c.entity == self.entity)

    def try_acquire(self, me: LockHolder) -> LockHolder | None:
        now = _now()
        row_values = {"token": self.token, "run_id": me.run_id, "pid": me.pid, "host": me.host,
                      "acquired_at": now, "heartbeat_at": now, "lease_seconds": self.lease}
        # The ledger's SQLite engine begins with BEGIN IMMEDIATE: the read and the claim are one atomic step.
        with self.engine.begin() as connection:
            row = connection.execute(sa.select(lock_table).where(self._where())).mappings().first()
            if row is not None:
                holder = _holder(row)
                expires = holder.heartbeat_at + timedelta(seconds=float(row["lease_seconds"]))
                dead_here = holder.host == me.host and not pid_alive(holder.pid)
                if expires > now and not dead_here:
                    return holder
                why = "its process is gone" if dead_here else f"no heartbeat since {holder.heartbeat_at:%H:%M:%S} UTC"
                logger.warning("taking over the writer lock on %s/%s from %s: %s",
                               self.target, self.entity, holder.describe(), why)
                connection.execute(lock_table.update().where(self._where()).values(row_values))
            else:
                connection.execute(lock_table.insert().values(target=self.target, entity=self.entity, **row_values))
        self._thread = threading.Thread(target=self._heartbeat, name=f"writer-lock-{self.entity}", daemon=True)
        self._thread.start()
        return None

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.lease / 4):
            try:
                with self.engine.begin() as connection:
                    renewed = connection.execute(
                        lock_table.update().where(self._where(), lock_table.c.token == self.token)
                        .values(heartbeat_at=_now())
                    ).rowcount
            except sa.exc.OperationalError as exc:  # a busy database: the next beat tries again
                logger.warning("writer lock heartbeat on %s/%s failed: %s", self.target, self.entity, exc)
                continue
            if not renewed:
                self.lost = True
                logger.error("lost the writer lock on %s/%s: another writer took it over", self.target, self.entity)
                return

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self.engine.begin() as connection:
            connection.execute(lock_table.delete().where(self._where(), lock_table.c.token == self.token))
        if self.lost:
            raise WriterLockLost(
                f"the writer lock on {self.target}/{self.entity} expired while held (no heartbeat for "
                f"{self.lease:.0f}s) and was taken over: writes of two runs may have interleaved"
            )


class _PostgresLock:
    """A session-level advisory lock on a connection of its own; the row only names the holder."""

    def __init__(self, engine: Engine, target: str, entity: str) -> None:
        self.engine = engine
        self.target = target
        self.entity = entity
        self.key = zlib.crc32(f"{target}/{entity}".encode()) - 2**31  # int4 range
        self.connection: Connection | None = None

    def try_acquire(self, me: LockHolder) -> LockHolder | None:
        connection = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        got = connection.execute(
            sa.text("SELECT pg_try_advisory_lock(:class_id, :key)"), {"class_id": _ADVISORY_CLASS, "key": self.key}
        ).scalar()
        if not got:
            connection.close()
            with self.engine.connect() as reader:
                row = reader.execute(
                    sa.select(lock_table).where(lock_table.c.target == self.target, lock_table.c.entity == self.entity)
                ).mappings().first()
            # The row may be missing for an instant while a holder writes it.
            return _holder(row) if row is not None else LockHolder("unknown", 0, "unknown", _now(), _now())
        self.connection = connection
        values = {"token": uuid.uuid4().hex, "run_id": me.run_id, "pid": me.pid, "host": me.host,
                  "acquired_at": me.acquired_at, "heartbeat_at": me.acquired_at, "lease_seconds": 0.0}
        # The connection holding the lock writes the row: a leftover row of a dead holder is replaced.
        connection.execute(lock_table.delete().where(lock_table.c.target == self.target,
                                                     lock_table.c.entity == self.entity))
        connection.execute(lock_table.insert().values(target=self.target, entity=self.entity, **values))
        return None

    def release(self) -> None:
        if self.connection is None:
            return
        try:
            self.connection.execute(lock_table.delete().where(lock_table.c.target == self.target,
                                                              lock_table.c.entity == self.entity))
            self.connection.execute(sa.text("SELECT pg_advisory_unlock(:class_id, :key)"),
                                    {"class_id": _ADVISORY_CLASS, "key": self.key})
        finally:
            # Closing ends the session on the server only when the pool discards it; invalidate to be sure
            # no pooled connection keeps the lock.
            self.connection.invalidate()
            self.connection.close()
            self.connection = None


def pid_alive(pid: int) -> bool:
    """Whether a process of this host runs under `pid` (a holder on this host needs no lease to be judged)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _holder(row: sa.RowMapping) -> LockHolder:
    return LockHolder(run_id=row["run_id"], pid=int(row["pid"]), host=row["host"],
                      acquired_at=row["acquired_at"], heartbeat_at=row["heartbeat_at"])


def _now() -> datetime:
    return datetime.now(UTC)
