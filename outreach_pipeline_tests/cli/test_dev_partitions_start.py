"""`outreach-pipeline dev` starts its sandbox instance's partitions where the seeded data starts, once and for good."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from outreach_pipeline.cli_runs import dev_partitions_start
from outreach_pipeline.settings import PipelineSettings


def test_the_first_start_chooses_the_seeded_days_start_and_later_starts_keep_it(tmp_path: Path) -> None:
    first = dev_partitions_start(tmp_path, seed_days=3, now=datetime(2026, 11, 29, 20, 15, tzinfo=UTC))
    assert first == "2026-11-26-00:00"
    # Days later the instance keeps its partitions: the first one does not move with the clock.
    assert dev_partitions_start(tmp_path, seed_days=3, now=datetime(2026, 12, 9, tzinfo=UTC)) == first
    # A valid partitions_start setting: the code location loads with it.
    assert PipelineSettings(partitions_start=first).partitions_start == first
