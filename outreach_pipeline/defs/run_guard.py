"""Crash recovery and watching for runs that `outreach-pipeline sync` executes in its own process.

Rules:

* Dagster's run monitoring (on in `dagster.yaml`) frees the slots of runs that ended; it cannot tell that a
  run worker died under the default run launcher (see the README's known limits). A run of `sync`
  runs in the `sync` process itself, which no daemon watches: each such run carries its pid and host as
  tags, and before a sync starts, every STARTED run of this instance whose process is gone from this host
  is marked failed and its pool slots are freed. Slots still claimed by runs that already ended are freed
  too. No hands needed after a SIGKILL.
* While the run waits for a pool slot, the watch says which run holds it, and gives up after the
  configured time: the run is marked failed, its slots freed, and `sync` exits with its own code.
* Dagster's in-process executor defers Ctrl-C and SIGTERM until the next step starts, so while it waits
  for a slot no step starts and the signal would never act. The watch sees such a pending interrupt and
  stops the process itself, marking the run canceled and freeing its slots first.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

import dagster as dg
from dagster._utils.interrupts import check_captured_interrupt

from outreach_pipeline.engine.writer_lock import pid_alive

PID_TAG = "outreach_pipeline/pid"
HOST_TAG = "outreach_pipeline/host"
_ALIVE_STATUSES = [dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.CANCELING]


class ExitCode(IntEnum):
    """What `sync` exits with."""

    OK = 0
    FAILED = 1  # a step failed, or a failure_rate check is at ERROR
    GAVE_UP = 3  # waited for a pool slot longer than --max-wait
    INTERRUPTED = 130  # Ctrl-C or SIGTERM


def process_tags() -> dict[str, str]:
    """Tags naming this process, so a later sync can tell whether the run's process is still alive."""
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}


def recover_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark this host's runs whose `sync` process died as failed and free their slots; free slots of
    runs that already ended. Returns one line per action taken."""
    actions: list[str] = []
    host = socket.gethostname()
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=_ALIVE_STATUSES, tags={HOST_TAG: host})):
        pid = int(run.tags.get(PID_TAG, "0") or 0)
        if pid <= 0 or pid == os.getpid() or pid_alive(pid):
            continue
        instance.report_run_failed(run, message=f"the sync process (pid {pid} on {host}) is gone; marked failed by "
                                                "the next sync")
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        actions.append(f"run {run.run_id} was left STARTED by a sync process that is gone (pid {pid}): "
                       "marked failed and its pool slots freed")
    storage = instance.event_log_storage
    if storage.supports_global_concurrency_limits:
        for run_id in sorted(storage.get_concurrency_run_ids()):
            run = instance.get_run_by_id(run_id)
            if run is None or run.is_finished:
                storage.free_concurrency_slots_for_run(run_id)
                actions.append(f"freed the pool slots still held by run {run_id}, which has ended")
    return actions


@dataclass
class WatchOutcome:
    """Set when the watch stopped the run (the process exits with `code` right after)."""

    code: ExitCode
    message: str


class RunWatch:
    """A daemon thread beside an in-process run: reports pool waits, gives up after `max_wait`, and turns a
    deferred Ctrl-C/SIGTERM into a clean stop (see the module docstring)."""

    def __init__(
        self,
        instance: dg.DagsterInstance,
        run_id: str,
        *,
        max_wait: float,
        echo: Callable[[str], None],
        poll_seconds: float = 1.0,
        report_every: float = 30.0,
    ) -> None:
        self.instance = instance
        self.run_id = run_id
        self.max_wait = max_wait
        self.echo = echo
        self.poll = poll_seconds
        self.report_every = report_every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="sync-run-watch", daemon=True)

    def __enter__(self) -> RunWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _waiting_for(self) -> list[str]:
        """What this run waits for: one phrase per pool where it has a step queued without a slot."""
        storage = self.instance.event_log_storage
        if not storage.supports_global_concurrency_limits:
            return []
        waits = []
        for pool in sorted(storage.get_concurrency_keys()):
            info = storage.get_concurrency_info(pool)
            if not any(p.run_id == self.run_id and p.assigned_timestamp is None for p in info.pending_steps):
                continue
            holders = sorted({f"run {s.run_id} ({s.step_key})" for s in info.claimed_slots if s.run_id != self.run_id})
            waits.append(f"pool {pool} (limit {info.limit}), held by {', '.join(holders) or 'nobody yet'}")
        return waits

    def _watch(self) -> None:
        waiting_since: float | None = None
        reported_at = 0.0
        interrupted_polls = 0
        while not self._stop.wait(self.poll):
            # A captured interrupt that stays pending means no step is running to receive it.
            interrupted_polls = interrupted_polls + 1 if check_captured_interrupt() else 0
            if interrupted_polls >= 2:
                self._abort(ExitCode.INTERRUPTED, "interrupted while waiting: the run is canceled and its pool "
                                                  "slots are freed")
                return
            try:
                waits = self._waiting_for()
            except Exception:  # the watch must never break the run it watches
                continue
            now = time.monotonic()
            if not waits:
                waiting_since = None
                continue
            waiting_since = waiting_since or now
            waited = now - waiting_since
            if waited >= self.max_wait:
                self._abort(ExitCode.GAVE_UP, f"gave up after waiting {waited:.0f}s for {'; '.join(waits)}. The "
                                              "run is marked failed; rerun when that run has finished, or raise "
                                              "--max-wait.")
                return
            if now - reported_at >= self.report_every:
                reported_at = now
                self.echo(f"waiting for {'; '.join(waits)} ({waited:.0f}s of at most {self.max_wait:.0f}s)")

    def _abort(self, code: ExitCode, message: str) -> None:
        run = self.instance.get_run_by_id(self.run_id)
        if run is not None and not run.is_finished:
            if code is ExitCode.INTERRUPTED:
                self.instance.report_run_canceled(run, message="canceled by Ctrl-C/SIGTERM while waiting for a slot")
            else:
                self.instance.report_run_failed(run, message=message)
        self.instance.event_log_storage.free_concurrency_slots_for_run(self.run_id)
        self.echo(message)
        sys.stdout.flush()
        sys.stderr.flush()
        # The main thread sleeps inside Dagster's executor, which would never return: end the process here.
        os._exit(code)
