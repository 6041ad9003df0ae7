"""The one vocabulary of what a sync did with a record: the ledger, the loader, the assets and the CLI use it.

A ``StrEnum``, so each member is also its plain name (``"created"``): stored as such in the ledger's columns
and in run metadata (``records_created``), and read back into the enum.
"""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    """What one run did with one record."""

    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"  # compared, equal: nothing written
    SKIPPED = "skipped"  # left alone on purpose (a flag, a stale version, ...), with a reason
    FAILED = "failed"  # with an error; retried by a later run

    @property
    def applied(self) -> bool:
        """The target holds the record's values after the run (written now or already equal)."""
        return self in _APPLIED

    @property
    def wrote(self) -> bool:
        """The run wrote the record."""
        return self in (Outcome.CREATED, Outcome.UPDATED)


_APPLIED = frozenset({Outcome.CREATED, Outcome.UPDATED, Outcome.UNCHANGED})


class SyncDirection(StrEnum):
    """Which way a record was being synced: the ledger keys the two directions' failures differently."""

    TO_WORKBOOKS = "to_workbooks"  # Outreach -> Workbooks: keyed by the Outreach id
    TO_OUTREACH = "to_outreach"  # Workbooks -> Outreach: keyed by the Workbooks id (a failed create has no Outreach id)
