"""The never-synced records a run's records point at, read so their links resolve in the same run.

A prospect changed in this window may point at an account that last changed long before the first window: no
window ever reads that account, and the prospect's employer link would wait for it forever. So after the
extracts, the ids each extract's rows point at (``accountId``, an opportunity's prospect roles, ``taskId``) are
collected per target entity, and those the ledger holds no Workbooks twin for, and that this run's own extract
of the entity did not read, are read by id.

Rules:
* Only never-synced targets are read: one with a Workbooks id in the ledger is resolved from the ledger.
* Pulled records are read with the same sparse fieldsets and preparation as the entity's extract (tasks spell
  skipped sequence tasks as ``extract_tasks`` does), and sit in the range's first window when they last changed
  before it (``window_of``), as retried records do.
* Pulls are transitive through the caller: a pulled task's prospect is pulled with the prospects, a pulled
  prospect's account with the accounts, by handing the pulled frames on as referencing frames.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

import pandas as pd

from outreach_pipeline.clients.outreach import OutreachClient
from outreach_pipeline.engine.extract import _dedupe, _frame, _Read, _read_by_ids, referenced_ids
from outreach_pipeline.engine.extract_engagement import TASK_SKIP_FIELDS, _with_fields, mark_skipped_tasks
from outreach_pipeline.engine.ledger import SyncLedger

#: Per Outreach collection, what its extract reads beyond the mapping's fields and does to the frame.
_PREPARED: dict[str, tuple[str, tuple[str, ...], Callable[[pd.DataFrame], pd.DataFrame]]] = {
    "tasks": ("fields[task]", TASK_SKIP_FIELDS, mark_skipped_tasks),
}


def targets(referencing: Iterable[tuple[pd.DataFrame, str]], already_read: pd.DataFrame) -> set[int]:
    """Ids the (frame, column) pairs point at, less those `already_read` (the entity's own extract) holds."""
    ids = set().union(*(referenced_ids(frame, column) for frame, column in referencing))
    return ids - set(already_read["id"].astype(int)) if len(already_read) else ids


def never_synced(ledger: SyncLedger, entity: str, ids: set[int]) -> set[int]:
    """The `ids` of `entity` the ledger knows no Workbooks twin of."""
    states = ledger.get_states(entity, ids)
    return {i for i in ids if (state := states.get(i)) is None or state.workbooks_id is None}


def read_targets(
    client: OutreachClient, resource: str, ids: Iterable[int], start: datetime, end: datetime, *,
    fields: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Records of `resource` by id, as its extract's frame (each in its window of [start, end))."""
    field_key, extra, prepare = _PREPARED.get(resource, ("", (), lambda frame: frame))
    if extra:
        fields = _with_fields(fields, field_key, extra)
    read = _Read()
    _read_by_ids(client, read, resource, ids, fields)
    return prepare(_dedupe(_frame(read, start, end)))


def no_targets(resource: str, start: datetime, end: datetime) -> pd.DataFrame:
    """The empty frame `read_targets` returns for no ids, without a client."""
    return _PREPARED.get(resource, ("", (), lambda frame: frame))[2](_frame(_Read(), start, end))


def with_targets(extracted: pd.DataFrame, pulled: pd.DataFrame | None) -> pd.DataFrame:
    """The entity's extract followed by the targets pulled for it (disjoint by construction)."""
    if pulled is None or pulled.empty:
        return extracted
    if extracted.empty:
        return pulled.reset_index(drop=True)
    return pd.concat([extracted, pulled], ignore_index=True)
