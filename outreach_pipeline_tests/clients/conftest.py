"""Fixtures for client protocol tests: real HTTP against small Starlette apps served by uvicorn."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import parse_qsl

import pytest

from outreach_pipeline.clients.http import RetryPolicy
from outreach_pipeline.sandbox.server import serve_in_thread


class FakeClock:
    """Epoch clock that only moves when the code under test sleeps (or the test advances it)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fast_retry() -> RetryPolicy:
    return RetryPolicy(max_attempts=4, base_delay=0.5, max_delay=5, max_total_wait=120, max_malformed_retries=2)


@pytest.fixture
def serve() -> Iterator[Callable]:
    """Serve an ASGI app for the test's duration; returns its base URL."""
    served = []

    def _serve(app) -> str:
        handle = serve_in_thread(app)
        served.append(handle)
        return handle.url

    yield _serve
    for handle in served:
        handle.stop()


def _read_request(connection: socket.socket) -> bytes:
    """Read one whole HTTP request (headers plus Content-Length body), or what arrived before a timeout."""
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = connection.recv(65536)
            if not chunk:
                return data
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(re.search(rb"content-length:\s*(\d+)", head, re.IGNORECASE).group(1)) if b"ength" in head else 0
        while len(body) < length:
            chunk = connection.recv(65536)
            if not chunk:
                break
            body += chunk
        return head + b"\r\n\r\n" + body
    except OSError:
        return data


@contextmanager
def dropping_server() -> Iterator[tuple[str, list[bytes]]]:
    """A TCP server that reads each request and closes the connection without replying."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.2)
    received: list[bytes] = []
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(2)
                received.append(_read_request(connection))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", received
    finally:
        stop.set()
        thread.join(2)
        listener.close()


async def form_pairs(request) -> list[tuple[str, str]]:
    """Decode a form-urlencoded body in order (python-multipart is not installed, and order matters
    for Workbooks square arrays)."""
    return parse_qsl((await request.body()).decode(), keep_blank_values=True)
