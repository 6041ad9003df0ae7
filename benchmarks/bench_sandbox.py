"""Sandbox benchmark: time to seed and start with N prospects, and time to serve 1,000-record pages.

    .venv/bin/python benchmarks/bench_sandbox.py [--prospects 100000] [--repeat 10]

Prints one line per figure; BENCHMARKS.md records them with this command.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import requests

from outreach_pipeline.sandbox.outreach.app import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET, SANDBOX_REFRESH_TOKEN
from outreach_pipeline.sandbox.runtime import SandboxConfig, start_sandbox


def _token(base_url: str) -> str:
    response = requests.post(
        f"{base_url}/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": SANDBOX_REFRESH_TOKEN,
            "client_id": SANDBOX_CLIENT_ID,
            "client_secret": SANDBOX_CLIENT_SECRET,
        },
        timeout=30,
    )
    response.raise_for_status()
    return response.json()["access_token"]


def _timed_get(session: requests.Session, url: str, params: dict | None = None) -> tuple[float, dict]:
    started = time.perf_counter()
    response = session.get(url, params=params, timeout=60)
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed, response.json()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prospects", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        config = SandboxConfig(data_dir=Path(tmp), prospects=args.prospects, outreach_port=0, workbooks_port=0)
        started = time.perf_counter()
        sandbox = start_sandbox(config)
        seed_and_start = time.perf_counter() - started
        with sandbox:
            print(f"seeded: {sandbox.seeded}")
            print(f"seed_and_start_seconds[{args.prospects} prospects]: {seed_and_start:.1f}  (target < 60)")
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {_token(sandbox.outreach_url)}"
            url = f"{sandbox.outreach_url}/api/v2/prospects"
            first_page = []
            next_pages = []
            params = {"page[size]": "1000", "sort": "updatedAt", "count": "false"}
            for _ in range(args.repeat):
                elapsed, body = _timed_get(session, url, params)
                first_page.append(elapsed)
                assert len(body["data"]) == 1000
                elapsed, body = _timed_get(session, body["links"]["next"])
                next_pages.append(elapsed)
            print(f"page_1000_first_ms: median {statistics.median(first_page) * 1000:.0f}, max {max(first_page) * 1000:.0f}  (target < 250)")
            print(f"page_1000_next_ms: median {statistics.median(next_pages) * 1000:.0f}, max {max(next_pages) * 1000:.0f}  (target < 250)")


if __name__ == "__main__":
    main()
