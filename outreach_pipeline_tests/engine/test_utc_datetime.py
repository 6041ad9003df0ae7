"""UtcDateTime on a real SQLite file and a real PostgreSQL database whose session zone is not UTC."""

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from outreach_pipeline.engine.utc_datetime import UtcDateTime

PLUS_TWO = timezone(timedelta(hours=2))
table = sa.Table(
    "moments", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True), sa.Column("at", UtcDateTime())
)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path: Path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'moments.db'}"
    else:
        url = f"{request.getfixturevalue('postgres_database_url')}?options=-c%20timezone%3DAsia%2FTokyo"
    engine = sa.create_engine(url)
    table.create(engine)
    yield engine
    engine.dispose()


def test_aware_datetimes_are_stored_as_utc_and_read_back_aware_in_utc(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        connection.execute(table.insert(), [{"id": 1, "at": datetime(2026, 3, 29, 3, 30, tzinfo=PLUS_TWO)}, {"id": 2, "at": None}])
        stored = connection.execute(sa.select(sa.cast(table.c.at, sa.String)).where(table.c.id == 1)).scalar_one()
        rows = connection.execute(sa.select(table.c.at).order_by(table.c.id)).scalars().all()
    assert rows == [datetime(2026, 3, 29, 1, 30, tzinfo=UTC), None]
    assert rows[0].tzinfo is UTC
    if engine.dialect.name == "sqlite":
        assert stored == "2026-03-29 01:30:00.000000"  # the representation ledgers had before this type
    else:
        assert stored == "2026-03-29 10:30:00+09"  # an instant, shown in the session's zone


def test_naive_datetimes_are_refused(engine: sa.Engine) -> None:
    naive = "naive datetime 2026-03-29T03:30:00 has no time zone"
    with pytest.raises(sa.exc.StatementError, match=naive), engine.begin() as connection:
        connection.execute(table.insert(), {"id": 1, "at": datetime(2026, 3, 29, 3, 30)})
