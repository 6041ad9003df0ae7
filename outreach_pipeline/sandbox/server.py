"""Serve ASGI apps with uvicorn on 127.0.0.1, in a background thread or in the foreground."""

from __future__ import annotations

import errno
import socket
import threading
import time
from dataclasses import dataclass, field

import uvicorn

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class PortInUse(OSError):
    """Another process holds the port; `service` names what was to listen on it."""

    def __init__(self, host: str, port: int, service: str = "sandbox server") -> None:
        self.host, self.port, self.service = host, port, service
        super().__init__(errno.EADDRINUSE, f"{service}: {host}:{port} is already in use")


def ensure_port_free(host: str, port: int, service: str = "sandbox server") -> None:
    """Raise PortInUse when something already listens on ``host:port`` (0, any free port, always passes)."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As uvicorn binds: a port left in TIME_WAIT by an earlier run is free, a listening one is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(host, port, service) from None
            raise


@dataclass
class ServedApp:
    """An app running in a daemon thread; `stop()` shuts uvicorn down and joins the thread."""

    host: str
    port: int
    server: uvicorn.Server
    thread: threading.Thread = field(repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)

    def __enter__(self) -> ServedApp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_in_thread(app, *, host: str = LOOPBACK, port: int = 0, startup_timeout: float = 15.0,
                    service: str = "sandbox server") -> ServedApp:
    """Start `app` with uvicorn in a daemon thread and wait until it accepts connections.

    `port=0` picks a free port; a taken port raises PortInUse naming `service`. Uvicorn's own signal
    handlers are disabled because they only work in the main thread.
    """
    ensure_port_free(host, port, service)
    port = port or free_port(host)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"sandbox server on {host}:{port} failed to start")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise TimeoutError(f"sandbox server on {host}:{port} did not start in {startup_timeout}s")
        time.sleep(0.02)
    return ServedApp(host=host, port=port, server=server, thread=thread)
