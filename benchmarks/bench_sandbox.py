"""Sandbox benchmark: seed-and-start time, 1,000-record Outreach pages, 100-value Workbooks lookups.

    .venv/bin/python benchmarks/bench_sandbox.py [--prospects 100000] [--workbooks-people 100000] [--repeat 10]

Prints one line per figure; BENCHMARKS.md records them with this command. Timings are wall-clock over
real HTTP on loopback (request sent to body received), the client's JSON decoding excluded.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import requests

from outreach_pipeline.clients.workbooks import WorkbooksClient
from outreach_pipeline.sandbox.credentials import (
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    SANDBOX_REFRESH_TOKEN,
    SANDBOX_WORKBOOKS_AUTH,
)
from outreach_pipeline.sandbox.runtime import RunningSandbox, SandboxConfig, start_sandbox
from outreach_pipeline.sandbox.workbooks.store import ReadQuery

PAGE_SIZE = 1000
LOOKUP_SIZE = 100
HTTP_TIMEOUT = 60
T = TypeVar("T")


def _token(base_url: str) -> str:
    response = requests.post(
        f"{base_url}/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": SANDBOX_REFRESH_TOKEN,
            "client_id": SANDBOX_CLIENT_ID,
            "client_secret": SANDBOX_CLIENT_SECRET,
        },
        timeout=HTTP_TIMEOUT,
    )
    response.raise_for_status()
    return response.json()["access_token"]


def _timed(function: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[float, T]:
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - started, result


def _summary(name: str, seconds: list[float], target_ms: int) -> str:
    median_ms, max_ms = statistics.median(seconds) * 1000, max(seconds) * 1000
    return f"{name}: median {median_ms:.0f}, max {max_ms:.0f}  (target < {target_ms}; n={len(seconds)})"


def bench_outreach_pages(sandbox: RunningSandbox, repeat: int) -> None:
    """A first page and the page after it, as a windowed extraction reads them (sorted by updatedAt)."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {_token(sandbox.outreach_url)}"
    params = {"page[size]": str(PAGE_SIZE), "sort": "updatedAt", "count": "false"}
    first_page: list[float] = []
    next_page: list[float] = []
    for _ in range(repeat):
        elapsed, response = _timed(
            session.get, f"{sandbox.outreach_url}/api/v2/prospects", params=params, timeout=HTTP_TIMEOUT
        )
        response.raise_for_status()
        body = response.json()
        assert len(body["data"]) == PAGE_SIZE, len(body["data"])
        first_page.append(elapsed)
        elapsed, response = _timed(session.get, body["links"]["next"], timeout=HTTP_TIMEOUT)
        response.raise_for_status()
        next_page.append(elapsed)
    print(_summary(f"outreach_page_{PAGE_SIZE}_first_ms", first_page, 250))
    print(_summary(f"outreach_page_{PAGE_SIZE}_next_ms", next_page, 250))


def _sampled_people(sandbox: RunningSandbox, count: int, seed: int) -> list[dict[str, Any]]:
    everyone = sandbox.workbooks_store.read(
        "crm/people",
        ReadQuery(select_columns=("id", "main_location[email]"), skip_total=True, max_rows=10**7),
    ).data
    return random.Random(seed).sample(everyone, min(count, len(everyone)))


def bench_workbooks_lookups(sandbox: RunningSandbox, repeat: int) -> None:
    """`WorkbooksClient.lookup` of 100 random ids, and of 100 random emails, among every seeded person."""
    client = WorkbooksClient(sandbox.workbooks_url, **SANDBOX_WORKBOOKS_AUTH)
    timings: dict[str, list[float]] = {"id": [], "main_location[email]": []}
    for round_number in range(repeat):
        people = _sampled_people(sandbox, LOOKUP_SIZE, seed=round_number)
        for field, seconds in timings.items():
            values = [person[field] for person in people]
            elapsed, found = _timed(client.lookup, "crm/people", field, values, ["id"])
            # Seeded emails repeat on purpose (duplicate-identity cases), so an email may find two people.
            assert len(found) >= len(set(values)), (field, len(found))
            seconds.append(elapsed)
    client.close()
    for field, seconds in timings.items():
        print(_summary(f"workbooks_lookup_{LOOKUP_SIZE}_by_{field}_ms", seconds, 250))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--prospects", type=int, default=100_000)
    parser.add_argument("--workbooks-people", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        config = SandboxConfig(
            data_dir=Path(tmp),
            prospects=args.prospects,
            workbooks_people=args.workbooks_people,
            outreach_port=0,
            workbooks_port=0,
        )
        seed_and_start, sandbox = _timed(start_sandbox, config)
        with sandbox:
            print(f"seeded: {sandbox.seeded}")
            print(
                f"seed_and_start_seconds[{args.prospects} prospects, {args.workbooks_people} Workbooks people]: "
                f"{seed_and_start:.1f}  (target < 60)"
            )
            bench_outreach_pages(sandbox, args.repeat)
            bench_workbooks_lookups(sandbox, args.repeat)


if __name__ == "__main__":
    main()
