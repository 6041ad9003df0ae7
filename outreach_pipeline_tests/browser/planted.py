"""A sandbox data directory whose recent windows hold known prospects, for the browser test.

The seed (accounts, prospects, opportunities, engagement, Workbooks people) ends before the first chosen window,
so the windows hold only the prospects planted here: a few valid ones per window and, in the middle window, one
whose first name is over Workbooks' 255-character limit (a legacy record, as the seed plants too). Each
window's counts are then known in advance. `outreach-pipeline dev` serves a data directory that already holds
data as it is, so the test starts the project exactly as the README's run command does, on this data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from outreach_pipeline.sandbox.runtime import SandboxConfig, start_sandbox
from outreach_pipeline.settings import WINDOW_KEY_FORMAT

HOUR = timedelta(hours=1)
#: Valid prospects planted in each of the three windows; the middle one also gets the too-long first name.
VALID_PER_WINDOW = (2, 3, 1)
TOO_LONG_FIRST_NAME = "L" * 300
#: What the load's failure says of the too-long name (mapping.transform: "<source> is N characters, over ...").
TOO_LONG_MESSAGE = "firstName is 300 characters, over the 255 limit of person_first_name"


@dataclass(frozen=True)
class PlantedWindows:
    """The three windows the test backfills, and what each holds."""

    starts: tuple[datetime, datetime, datetime]
    valid: dict[str, int]  # partition key -> valid prospects changed in that window
    failing_window: str  # the partition key holding the prospect that cannot be synced
    failing_outreach_id: int

    @property
    def keys(self) -> list[str]:
        return [key_of(start) for start in self.starts]

    @property
    def partition_range(self) -> str:
        """The range as Dagster's partition selector takes it."""
        return f"[{self.keys[0]}...{self.keys[-1]}]"

    @property
    def partitions_start(self) -> str:
        """A first partition a day before the windows: the UI lists few partitions."""
        return key_of((self.starts[0] - timedelta(days=1)).replace(hour=0))


def key_of(start: datetime) -> str:
    return start.strftime(WINDOW_KEY_FORMAT)


def recent_windows(now: datetime | None = None) -> tuple[datetime, datetime, datetime]:
    """Three consecutive complete hours, ending an hour before the last complete one: the hourly schedule
    (which syncs the last complete hour) never touches them, even when the test runs across an hour."""
    now = now or datetime.now(UTC)
    last_complete = now.replace(minute=0, second=0, microsecond=0) - HOUR
    first = last_complete - 3 * HOUR
    return first, first + HOUR, first + 2 * HOUR


def plant_windows(data_dir: Path, prospects: int, now: datetime | None = None) -> PlantedWindows:
    """Seed `data_dir` (ending a minute before the first window) and plant the windows' prospects.

    Args:
        data_dir: an empty directory; `outreach-pipeline dev --data-dir` serves it afterwards.
        prospects: the seed's size.
        now: the clock the windows are chosen by (default: now).
    """
    starts = recent_windows(now)
    config = SandboxConfig(data_dir=data_dir, outreach_port=0, workbooks_port=0, prospects=prospects,
                           seed_now=starts[0] - timedelta(minutes=1))
    with start_sandbox(config) as sandbox:
        store = sandbox.outreach_store
        valid: dict[str, int] = {}
        failing_id = 0
        for number, (start, count) in enumerate(zip(starts, VALID_PER_WINDOW, strict=True)):
            for index in range(count):
                moment = start + timedelta(minutes=10 + 5 * index)
                store.now = lambda moment=moment: moment
                store.create("prospect", {"firstName": f"Window{number}", "lastName": f"Planted{index}",
                                          "emails": [f"w{number}.p{index}@browser-test.example"]})
            valid[key_of(start)] = count
            if number == 1:
                moment = start + timedelta(minutes=40)
                store.now = lambda moment=moment: moment
                failing_id = store.create("prospect", {"firstName": TOO_LONG_FIRST_NAME, "lastName": "Legacy",
                                                       "emails": ["legacy@browser-test.example"]}).id
    return PlantedWindows(starts=starts, valid=valid, failing_window=key_of(starts[1]),
                          failing_outreach_id=failing_id)
