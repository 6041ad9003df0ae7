"""Extract Outreach engagement (tasks, sequence states) for a range of windows: the reads beyond one resource.

Calls and sequences read as every other resource does (``extract_entity``). Two need more:

* **Tasks** also read ``taskType``, ``completed`` and ``completedAt``, to tell a skipped sequence task from a
  completed one. Outreach has no ``skipped`` state literal (``state`` is pending, incomplete or complete); a
  sequence-step task (``taskType`` ``sequence_step_*``) whose state is ``complete`` while ``completed`` is false
  left the sequence without being done: it was skipped. The extract spells that ``state = skipped``, so the
  mapping turns it into Cancelled as data, like every other state.
* **Sequence states** are written onto the Person of their prospect, and a person in several sequences shows
  the state changed last. So the read covers, besides the window's changed states, *every* state of each
  prospect it touches (``filter[prospect][id]=``), and the planner keeps, per prospect, the greatest
  ``updatedAt`` (then the greatest id) and skips the others as ``superseded``. Whichever window runs, and in
  whichever order, the Person ends with the same state. Each row carries its sequence's name and its current
  step's ``order`` (``_sequence_name``, ``_sequence_step_order``), rebuilt into the mapping's lookup frames by
  ``sequence_state_lookups``.

A step change without a state change: Outreach moves a state to its next step by changing the state's
``sequenceStep`` relationship, a change of the sequence state record, which moves its ``updatedAt`` (the
sandbox does so on every relationship change), so the window read sees it. ``stateChangedAt`` stays put, as it
should: it is the time of the last *state* change, shown as State Updated At.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

import pandas as pd

from outreach_pipeline.clients.outreach import OutreachClient
from outreach_pipeline.engine.extract import (
    READ_WINDOW,
    Extract,
    WindowReadPlan,
    _dedupe,
    _frame,
    _Read,
    _read_by_ids,
    _read_window,
    extract_records,
)

SKIPPED_STATE = "skipped"
SEQUENCE_STEP_TASK_PREFIX = "sequence_step"
TASK_SKIP_FIELDS = ("taskType", "completed", "completedAt")
SEQUENCE_NAME_COLUMN = "_sequence_name"
STEP_ORDER_COLUMN = "_sequence_step_order"
RELATIONSHIP_COLUMNS = ("prospectId", "sequenceId", "sequenceStepId")


def _with_fields(fields: Mapping[str, str] | None, key: str, extra: Iterable[str]) -> dict[str, str] | None:
    if not fields:
        return None  # all attributes are read anyway
    names = [name for name in fields.get(key, "").split(",") if name]
    return {**fields, key: ",".join(dict.fromkeys([*names, *extra]))}


def mark_skipped_tasks(frame: pd.DataFrame) -> pd.DataFrame:
    """Set ``state`` to ``skipped`` on sequence-step tasks that are complete without having been completed."""
    if frame.empty or not {"state", "taskType", "completed"} <= set(frame.columns):
        return frame
    sequence_task = frame["taskType"].astype("string").str.startswith(SEQUENCE_STEP_TASK_PREFIX).fillna(False)
    not_done = frame["completed"].map(lambda value: value is False)
    skipped = sequence_task & (frame["state"] == "complete").fillna(False) & not_done
    frame.loc[skipped.astype(bool), "state"] = SKIPPED_STATE
    return frame


def extract_tasks(
    client: OutreachClient,
    resource: str,
    start: datetime,
    end: datetime,
    *,
    retry_ids: Iterable[int] = (),
    from_beginning: bool = False,
    fields: Mapping[str, str] | None = None,
    window: WindowReadPlan = READ_WINDOW,
) -> Extract:
    """Tasks changed in the range (plus ``retry_ids``), with skipped sequence tasks spelt ``skipped``."""
    result = extract_records(
        client, resource, start, end, retry_ids=retry_ids, from_beginning=from_beginning,
        fields=_with_fields(fields, "fields[task]", TASK_SKIP_FIELDS), window=window,
    )
    result.frame = mark_skipped_tasks(result.frame)
    return result


def extract_sequence_states(
    client: OutreachClient,
    resource: str,
    start: datetime,
    end: datetime,
    *,
    retry_ids: Iterable[int] = (),
    from_beginning: bool = False,
    fields: Mapping[str, str] | None = None,
    window: WindowReadPlan = READ_WINDOW,
) -> Extract:
    """Sequence states changed in the range (plus ``retry_ids``) and every other state of their prospects."""
    include = ("sequence", "sequenceStep")
    params = {**fields, "fields[sequence]": "name", "fields[sequenceStep]": "order"} if fields else {}
    read = _Read()
    _read_window(client, read, resource, start, end, lower_open=from_beginning, include=include, params=params,
                 plan=window)
    seen = read.ids | {r.id for r in read.rejected}
    retry = sorted(i for i in set(retry_ids) if i not in seen)
    _read_by_ids(client, read, resource, retry, {"include": ",".join(include), **params})
    touched = _dedupe(_frame(read, start, end))
    prospects = touched["prospectId"].dropna().astype(int).tolist() if "prospectId" in touched else []
    # Every state of those prospects, so the latest one per person is chosen from all of them.
    _read_by_ids(client, read, resource, prospects, {"include": ",".join(include), **params}, relationship="prospect")
    frame = _dedupe(_frame(read, start, end))
    for column in RELATIONSHIP_COLUMNS:  # a window without states still has the columns the mapping reads
        if column not in frame:
            frame[column] = pd.Series([pd.NA] * len(frame), index=frame.index, dtype="Int64")

    names = {r.id: r.attributes.get("name") for r in read.included if r.type == "sequence"}
    orders = {r.id: r.attributes.get("order") for r in read.included if r.type == "sequenceStep"}
    for column, resource_name, known, attribute in (
        ("sequenceId", "sequences", names, "name"),
        ("sequenceStepId", "sequenceSteps", orders, "order"),
    ):
        ids = set(frame[column].dropna().astype(int)) if column in frame else set()
        if missing := ids - known.keys():
            related = _Read(keep=lambda record, attribute=attribute: (record.id, record.attributes.get(attribute)))
            _read_by_ids(client, related, resource_name, missing)
            known |= dict(related.records)
    frame[SEQUENCE_NAME_COLUMN] = _mapped(frame, "sequenceId", names)
    frame[STEP_ORDER_COLUMN] = _mapped(frame, "sequenceStepId", orders)
    return Extract(frame=frame, retried_ids=retry)


def _mapped(frame: pd.DataFrame, column: str, values: Mapping[int, object]) -> pd.Series:
    if column not in frame:
        return pd.Series([None] * len(frame), index=frame.index, dtype=object)
    return frame[column].map(lambda value: None if pd.isna(value) else values.get(int(value))).astype(object)


def sequence_state_lookups(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The lookup frames the sequence-state mapping reads (``sequence.name``, ``sequenceStep.order``)."""
    lookups = {}
    for relation, column, value_column, attribute in (
        ("sequence", "sequenceId", SEQUENCE_NAME_COLUMN, "name"),
        ("sequenceStep", "sequenceStepId", STEP_ORDER_COLUMN, "order"),
    ):
        if column in frame and value_column in frame:
            rows = frame[[column, value_column]].dropna(subset=[column])
            lookups[relation] = pd.DataFrame(
                {"id": rows[column].astype("Int64").to_numpy(), attribute: rows[value_column].to_numpy()}
            )
        else:
            lookups[relation] = pd.DataFrame({"id": pd.Series(dtype="Int64"), attribute: pd.Series(dtype=object)})
    return lookups
