"""engine/one_ahead.py: requests go out in order, one at a time, the next while the caller handles a reply."""

from __future__ import annotations

import threading

import pytest

from outreach_pipeline.engine.one_ahead import sent_one_ahead


class LostReply(Exception):
    pass


class ServiceDown(Exception):
    pass


class Recorder:
    """A `send` that logs what was sent and how many requests were in flight at once."""

    def __init__(self, fail: dict[int, Exception] | None = None) -> None:
        self.sent: list[int] = []
        self.fail = fail or {}
        self.in_flight = 0
        self.most_in_flight = 0
        self.finished: list[int] = []
        self._lock = threading.Lock()

    def __call__(self, item: int) -> int:
        with self._lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self.sent.append(item)
        try:
            if item in self.fail:
                raise self.fail[item]
            return item * 10
        finally:
            with self._lock:
                self.in_flight -= 1
                self.finished.append(item)


def test_replies_come_back_in_order_one_request_at_a_time() -> None:
    send = Recorder()
    replies = [(reply.item, reply.result()) for reply in sent_one_ahead(list(range(20)), send)]
    assert replies == [(i, i * 10) for i in range(20)]
    assert send.sent == list(range(20))
    assert send.most_in_flight == 1


def test_the_next_request_is_sent_while_the_caller_handles_a_reply() -> None:
    send = Recorder()
    seen_sent_while_handling: list[list[int]] = []
    for reply in sent_one_ahead([1, 2, 3], send):
        # The look-ahead request completes while this reply is being handled (up to 5 s, never on time alone).
        deadline = threading.Event()
        for _ in range(5000):
            if len(send.finished) >= min(reply.item + 1, 3):
                break
            deadline.wait(0.001)
        seen_sent_while_handling.append(list(send.finished))
    assert seen_sent_while_handling[0] == [1, 2]
    assert seen_sent_while_handling[1] == [1, 2, 3]


def test_a_carried_on_failure_does_not_stop_the_sending() -> None:
    send = Recorder(fail={2: LostReply("lost")})
    outcomes = [(reply.item, type(reply.error).__name__ if reply.error else reply.result())
                for reply in sent_one_ahead([1, 2, 3], send, carry_on=(LostReply,))]
    assert outcomes == [(1, 10), (2, "LostReply"), (3, 30)]


def test_any_other_failure_stops_the_sending_and_reaches_the_caller() -> None:
    send = Recorder(fail={2: ServiceDown("down")})
    handled = []
    with pytest.raises(ServiceDown):
        for reply in sent_one_ahead([1, 2, 3, 4], send, carry_on=(LostReply,)):
            handled.append(reply.result())
    assert handled == [10]
    assert send.sent == [1, 2], "nothing is sent after a failure the caller does not carry on after"


def test_a_caller_stopping_early_awaits_the_request_in_flight_and_sends_nothing_more() -> None:
    send = Recorder()
    with pytest.raises(RuntimeError):
        for reply in sent_one_ahead([1, 2, 3, 4], send):
            if reply.item == 2:
                raise RuntimeError("ledger unavailable")
    assert send.sent == [1, 2, 3], "the look-ahead request was already out; nothing after it"
    assert send.in_flight == 0 and send.finished == [1, 2, 3], "no request runs on behind the caller"


def test_nothing_to_send() -> None:
    assert list(sent_one_ahead([], Recorder())) == []
