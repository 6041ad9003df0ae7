"""One Outreach entity written to several Workbooks controllers, chosen per record by a value (mapping data).

The tasks mapping declares ``route: {source: action, entities: {in_person: meetings}}``: a task whose ``action`` is
``in_person`` is staged, planned, written and recorded in the ledger through the ``meetings`` entity mapping
(``activity/meetings``, its own link key and flags); every other task through ``tasks`` (``activity/tasks``).

Rules:

* Staging keeps the extracted order and adds ``_route`` (the entity mapping each row went through), so the
  window-aware IO manager stores one frame per window whatever the routes.
* Loading runs one ``EntityLoader`` per route over that route's rows; the results add up to one outcome per row.
* Retries (failed rows, pending links) are read for every route of the entity, and an update-only record whose
  Workbooks twin does not exist yet (``no_match``, e.g. a sequence state whose Person is not synced) is read again
  every run until the twin exists: engagement waits for its Person instead of being dropped.
* A record whose route value changes (a task turned from ``call`` into ``in_person``) is written through its new
  route; the record written through the old one stays (deletes are not propagated, see README).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import sqlalchemy as sa

from outreach_pipeline.engine.extract import EXTRACT_ERROR_COLUMN, WINDOW_COLUMN, PullIds, ids_to_pull
from outreach_pipeline.engine.ledger import SyncLedger, record_state
from outreach_pipeline.engine.ledger_failures import NO_BACKOFF, RetryBackoff
from outreach_pipeline.engine.load import OUTCOME_COLUMNS, EntityLoader, LoadResult
from outreach_pipeline.mapping.errors import ErrorKind, ValidationError
from outreach_pipeline.mapping.models import EntityMapping, MappingSet
from outreach_pipeline.mapping.transform import stage_records

ROUTE_COLUMN = "_route"
#: Extracted rows staged at a time. Staging 100,000 prospects at once took 173 MiB of transient memory for a
#: 29 MiB result; in chunks of 10,000, 58 MiB (the step's peak grows with the chunk, not with the range).
STAGE_CHUNK_ROWS = 10_000
#: The planner's reason for an update-only record without a Workbooks twin (see engine.plan).
NO_MATCH = "no_match"


def route_of(frame: pd.DataFrame, entity: EntityMapping) -> pd.Series:
    """Per row, the name of the entity mapping it goes through."""
    if entity.route is None or entity.route.source not in frame.columns:
        return pd.Series(entity.name, index=frame.index, dtype=object)
    values = frame[entity.route.source].astype("string").str.strip()
    return values.map(entity.route.entities).fillna(entity.name).astype(object)


def stage_routed(
    frame: pd.DataFrame, mappings: MappingSet, entity: EntityMapping, *, lookups: dict[str, pd.DataFrame] | None = None
) -> pd.DataFrame:
    """``stage_records`` per route, in the extracted order, with ``_route`` naming each row's entity mapping."""
    frame = frame.reset_index(drop=True)
    if entity.route is None:
        return stage_records(frame, entity, lookups=lookups)
    routes = route_of(frame, entity)
    parts = []
    for name in mappings.route_entities(entity.name):
        mask = routes == name
        if name != entity.name and not mask.any():
            continue
        staged = stage_records(frame[mask], mappings.entity(name), lookups=lookups)
        staged.index = frame.index[mask]
        staged[ROUTE_COLUMN] = name
        parts.append(staged)
    return pd.concat(parts).sort_index().reset_index(drop=True)


def stage_extracted(
    extracted: pd.DataFrame, mappings: MappingSet, entity: EntityMapping, *,
    lookups: dict[str, pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """The staged frame of an extract (`stage_routed`) with each row's sync window, and an unreadable API record
    failing alone with the reader's message rather than its empty fields'. The hourly `staged/*` assets and the
    low-latency lane (engine/lane.py) stage through this one function.

    The rows are staged `STAGE_CHUNK_ROWS` at a time (`staging_chunks`), so the transient memory of staging is
    bounded by the chunk, not the range; the result is the one the whole frame would give, in the extracted order.
    """
    extracted = extracted.reset_index(drop=True)
    chunks = staging_chunks(extracted["id"], STAGE_CHUNK_ROWS) if "id" in extracted.columns else []
    if len(chunks) <= 1:
        return _stage_chunk(extracted, mappings, entity, lookups)
    parts = []
    for positions in chunks:
        part = _stage_chunk(extracted.iloc[positions].reset_index(drop=True), mappings, entity, lookups)
        part.index = positions
        parts.append(part)
    return pd.concat(parts).sort_index().reset_index(drop=True)


def staging_chunks(ids: pd.Series, size: int) -> list[pd.Index]:
    """Row positions to stage together: runs of about `size` rows in order, and every row whose id appears more
    than once in one chunk of its own (staging reports a repeated id on each of its rows, so they must meet)."""
    repeated = ids.duplicated(keep=False).to_numpy()
    positions = pd.RangeIndex(len(ids))
    single = positions[~repeated]
    chunks = [single[start : start + size] for start in range(0, len(single), size)]
    if repeated.any():
        chunks.append(positions[repeated])
    return chunks


def _stage_chunk(
    extracted: pd.DataFrame, mappings: MappingSet, entity: EntityMapping, lookups: dict[str, pd.DataFrame] | None
) -> pd.DataFrame:
    frame = stage_routed(extracted, mappings, entity, lookups=lookups)
    frame[WINDOW_COLUMN] = extracted[WINDOW_COLUMN].to_numpy()
    if EXTRACT_ERROR_COLUMN in extracted:
        frame["validation_errors"] = [
            [ValidationError(field=None, kind=ErrorKind.UNREADABLE, message=error).as_record()]
            if isinstance(error, str) else list(errors)
            for errors, error in zip(frame["validation_errors"], extracted[EXTRACT_ERROR_COLUMN], strict=True)
        ]
    return frame


def waiting_ids(ledger: SyncLedger, entity: str) -> set[int]:
    """Records of an update-only entity whose last run found no Workbooks record to update (``no_match``)."""
    query = sa.select(record_state.c.outreach_id).where(
        record_state.c.entity == entity, record_state.c.last_reason == NO_MATCH
    )
    with ledger.engine.connect() as connection:
        return {int(row[0]) for row in connection.execute(query)}


def ids_to_pull_routed(
    ledger: SyncLedger, mappings: MappingSet, entity: str, referenced: set[int], backoff: RetryBackoff = NO_BACKOFF
) -> PullIds:
    """``ids_to_pull`` over every route of ``entity``, plus update-only records still waiting for their twin."""
    ids = PullIds()
    for name in mappings.route_entities(entity):
        ids |= ids_to_pull(ledger, name, referenced if name == entity else set(), backoff)
        if not mappings.entity(name).create:
            ids.retry |= waiting_ids(ledger, name) - ids.waiting
    ids.referenced -= ids.retry
    return ids


class RoutedLoader:
    """Loads staged rows through the entity mapping of each row's route; same interface as ``EntityLoader``."""

    def __init__(
        self, *, mappings: MappingSet, entity: EntityMapping, loader_class: type[EntityLoader] = EntityLoader,
        **loader_args: Any,
    ) -> None:
        """`loader_class`: `EntityLoader`, or the dry run's `DryRunLoader`."""
        self.loader_class = loader_class
        self.mappings = mappings
        self.entity = entity
        self.loader_args = loader_args

    def load(self, staged: pd.DataFrame) -> LoadResult:
        """Load every route's rows; every row ends with exactly one outcome, under its route's entity."""
        if self.entity.route is None or ROUTE_COLUMN not in staged.columns:
            return self.loader_class(mappings=self.mappings, entity=self.entity, **self.loader_args).load(staged)
        results = []
        for name in self.mappings.route_entities(self.entity.name):
            rows = staged[staged[ROUTE_COLUMN] == name]
            if name != self.entity.name and rows.empty:
                continue
            loader = self.loader_class(mappings=self.mappings, entity=self.mappings.entity(name), **self.loader_args)
            results.append(loader.load(rows))
        counts: dict[str, int] = {}
        for result in results:
            for outcome, count in result.counts.items():
                counts[outcome] = counts.get(outcome, 0) + count
        frames = [result.outcomes for result in results if len(result.outcomes)]
        return LoadResult(
            outcomes=pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=OUTCOME_COLUMNS),
            counts=counts,
            preview=[item for result in results for item in result.preview][:10],
            pending_relations=sum(result.pending_relations for result in results),
        )
