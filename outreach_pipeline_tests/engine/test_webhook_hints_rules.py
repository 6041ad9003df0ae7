"""The pure rules of engine/webhook_hints.py: when a window read may be skipped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from outreach_pipeline.engine.webhook_hints import ListeningSpan, ReadReason, decide, listened_through

START = datetime(2026, 11, 1, 13, tzinfo=UTC)
END = START + timedelta(hours=1)
GRACE = timedelta(minutes=2)


def span(start_minutes: int, end_minutes: int, resource: str = "*", action: str = "*") -> ListeningSpan:
    return ListeningSpan(resource, action, START + timedelta(minutes=start_minutes), START + timedelta(minutes=end_minutes))


def _decide(spans: list[ListeningSpan], hinted: set[str] = frozenset(), types=("prospect",), start=START, end=END):
    return decide(types, start, end, spans=spans, hinted=set(hinted), grace=GRACE, sweep_hours=24)


def test_a_quiet_window_listened_through_is_skipped() -> None:
    assert _decide([span(-5, 63)]).reason is ReadReason.QUIET
    # Two spans that meet are one; an earlier span ending before a later one starts is a gap.
    assert _decide([span(-5, 30), span(30, 63)]).reason is ReadReason.QUIET
    assert _decide([span(-90, -30), span(-5, 63)]).reason is ReadReason.QUIET
    assert _decide([span(-5, 30), span(31, 63)]).reason is ReadReason.NOT_LISTENING


def test_anything_short_of_proof_reads() -> None:
    assert _decide([]).reason is ReadReason.NOT_LISTENING
    assert _decide([span(-5, 61)]).reason is ReadReason.NOT_LISTENING  # not through the grace
    assert _decide([span(1, 63)]).reason is ReadReason.NOT_LISTENING  # started late
    assert _decide([span(-5, 63)], hinted={"prospect"}).reason is ReadReason.HINTED
    assert _decide([span(-5, 63, resource="account")]).reason is ReadReason.NOT_SUBSCRIBED
    assert _decide([span(-5, 63, action="updated")]).reason is ReadReason.NOT_SUBSCRIBED  # creates unseen
    both = ("opportunity", "opportunityProspectRole")
    assert _decide([span(-5, 63)], hinted={"opportunityProspectRole"}, types=both).reason is ReadReason.HINTED
    assert decide(("prospect",), START, END, spans=[span(-5, 63)], hinted=set(), grace=GRACE, sweep_hours=24,
                  enabled=False).reason is ReadReason.HINTS_OFF


def test_the_sweep_window_reads_back_to_the_previous_sweep_once_hints_were_in_use() -> None:
    midnight = datetime(2026, 11, 2, tzinfo=UTC)
    plain = _decide([], start=midnight, end=midnight + timedelta(hours=1))
    assert (plain.reason, plain.read_from) == (ReadReason.SWEEP, midnight)  # no receiver: as before
    listened = _decide([span(0, 600)], start=midnight, end=midnight + timedelta(hours=1))
    assert (listened.reason, listened.read_from) == (ReadReason.SWEEP, midnight - timedelta(hours=23))
    assert listened_through([span(-5, 63)], "prospect", START, END + GRACE)


def test_a_late_delivery_reads_back_to_its_window_unless_a_sweep_reads_further() -> None:
    late = decide(("prospect",), START, END, spans=[span(-5, 63)], hinted=set(), grace=GRACE, sweep_hours=24,
                  late_from=START - timedelta(hours=3))
    assert (late.reason, late.read_from) == (ReadReason.LATE_HINT, START - timedelta(hours=3))
    midnight = datetime(2026, 11, 2, tzinfo=UTC)
    sweep = decide(("prospect",), midnight, midnight + timedelta(hours=1), spans=[span(0, 600)], hinted=set(),
                   grace=GRACE, sweep_hours=24, late_from=midnight - timedelta(hours=2))
    assert sweep.reason is ReadReason.SWEEP
