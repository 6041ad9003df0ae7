"""The low-latency lane's range rules (engine/lane.py): from the cursor less the lag to now less the lag, never
before the previous hour, and where the lane's entities agree with the hourly flows."""

from datetime import UTC, datetime, timedelta

from outreach_pipeline.defs.assets import FLOWS
from outreach_pipeline.defs.assets_outreach import REVERSE_FLOWS
from outreach_pipeline.engine.lane import LANE_FLOWS, LaneRange, lane_range

NOW = datetime(2026, 11, 30, 10, 30, 15, tzinfo=UTC)
LAG = timedelta(seconds=10)


def test_a_run_reads_from_its_cursor_less_the_lag_to_now_less_the_lag() -> None:
    cursor = NOW - timedelta(minutes=1)
    assert lane_range(cursor, NOW, LAG) == LaneRange(since=cursor - LAG, until=NOW - LAG)


def test_the_first_run_and_a_stale_cursor_start_at_the_previous_hour() -> None:
    previous_hour = datetime(2026, 11, 30, 9, tzinfo=UTC)
    assert lane_range(None, NOW, LAG).since == previous_hour
    assert lane_range(NOW - timedelta(days=2), NOW, LAG).since == previous_hour


def test_a_cursor_ahead_of_now_gives_an_empty_range_not_a_reversed_one() -> None:
    span = lane_range(NOW + timedelta(minutes=5), NOW, LAG)
    assert span.since == span.until == NOW - LAG


def test_the_lane_entities_are_the_hourly_flows_of_the_same_names() -> None:
    hourly = {flow.entity: (flow.outreach_name, flow.workbooks_name) for flow in FLOWS}
    reverse = {flow.entity: (flow.outreach_name, flow.workbooks_name) for flow in REVERSE_FLOWS}
    for flow in LANE_FLOWS:
        assert hourly[flow.entity] == reverse[flow.entity] == (flow.outreach_name, flow.workbooks_name)
