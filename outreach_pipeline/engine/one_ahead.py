"""Send a sequence of requests one ahead: the next is in flight while the caller handles the last reply.

A load alternates between the API (a write batch being committed) and its own CPU (recording the batch's
outcomes in the ledger, reporting progress). Sent inline, each waits for the other. Sent one ahead, the service
commits batch i+1 while the client records batch i, so the two overlap. Rules:

* The requests go out one at a time, in the given order, from one background thread: the service sees the
  same sequence it would see sent inline, and at most one request is in flight beyond the reply being handled.
* Replies come back in order. A request whose failure the caller carries on after (`carry_on`, e.g. a lost
  reply, which a load reconciles later) does not stop the next; any other failure stops the sending: nothing
  after it is sent, and the error is raised to the caller when it reaches that reply.
* The caller stopping early (an exception in its loop) stops the sending too; the request in flight is awaited
  before the exception goes on, so no write runs on behind the load. Its reply is dropped: the load is then
  in the state of a process killed between a write and its record, which the next run's lookup by link key
  reconciles (engine/load.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Reply(Generic[T, R]):
    """A sent item and what its request returned or raised."""

    def __init__(self, item: T, future: Future[R]) -> None:
        self.item = item
        self._future = future

    @property
    def error(self) -> BaseException | None:
        return self._future.exception()

    def result(self) -> R:
        """The request's return value; raises what the request raised."""
        return self._future.result()


def sent_one_ahead(
    items: Sequence[T], send: Callable[[T], R], *, carry_on: tuple[type[BaseException], ...] = ()
) -> Iterator[Reply[T, R]]:
    """`Reply` per item, in order, each request sent while the caller handles the previous reply.

    A reply whose `error` is not a `carry_on` one is the last: the caller must raise it (`result()`).
    """
    if not items:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="one-ahead") as sender:
        in_flight: Future[R] | None = sender.submit(send, items[0])
        try:
            for index, item in enumerate(items):
                assert in_flight is not None
                current = in_flight
                wait([current])
                in_flight = None
                error = current.exception()
                if index + 1 < len(items) and (error is None or isinstance(error, carry_on)):
                    in_flight = sender.submit(send, items[index + 1])
                yield Reply(item, current)
                if error is not None and not isinstance(error, carry_on):
                    return  # the caller raised it (result()); nothing after it was sent
        finally:
            if in_flight is not None:
                wait([in_flight])
