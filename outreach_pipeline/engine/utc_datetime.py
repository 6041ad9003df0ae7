"""A timestamp column that holds UTC and always reads back as an aware UTC ``datetime``.

Rules:
* Only timezone-aware datetimes are written; a naive one raises (its zone would be a guess).
* Values are converted to UTC before they reach the database. PostgreSQL stores ``timestamptz`` (an
  instant); SQLite has no timestamp type and stores the naive UTC text SQLAlchemy has always written
  (``YYYY-MM-DD HH:MM:SS.ffffff``), so ledgers written before this type existed read back unchanged.
* Reads return ``tzinfo=UTC`` on both: SQLite's naive text is UTC by the rule above, and PostgreSQL's
  session time zone is converted away.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Dialect


class UtcDateTime(sa.types.TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that stores UTC and returns aware UTC datetimes on every dialect."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}: {value!r}")
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} has no time zone; pass an aware datetime")
        moment = to_utc(value)
        # SQLite's DATETIME drops the offset anyway; dropping it here states that what is kept is UTC.
        return moment.replace(tzinfo=None) if dialect.name == "sqlite" else moment

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def to_utc(moment: datetime) -> datetime:
    """An aware ``datetime`` (pandas ``Timestamp`` included) as a plain ``datetime`` in UTC."""
    if moment.tzinfo is UTC and type(moment) is datetime:
        return moment  # the usual case, on every value the ledger writes
    if hasattr(moment, "to_pydatetime"):
        moment = moment.to_pydatetime()
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment.isoformat()} has no time zone; pass an aware datetime")
    return moment.astimezone(UTC)

