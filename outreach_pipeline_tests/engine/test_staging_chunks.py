"""Staging in chunks (engine/routing.py `stage_extracted`) gives exactly the frame staging the whole would give:
same rows in the extracted order, same values and errors, repeated ids reported on each of their rows."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outreach_pipeline.engine import routing
from outreach_pipeline.engine.extract import EXTRACT_ERROR_COLUMN, WINDOW_COLUMN
from outreach_pipeline.engine.routing import stage_extracted, staging_chunks
from outreach_pipeline.mapping.models import load_mapping_set
from outreach_pipeline_tests.engine.frames import T0, extracted_prospects

MAPPINGS = load_mapping_set()
WINDOWS = [T0.floor("h") + pd.Timedelta(hours=h) for h in range(3)]

prospect_rows = st.lists(
    st.fixed_dictionaries({
        "id": st.integers(min_value=1, max_value=25),  # small: repeated ids happen
        "firstName": st.sampled_from(["Ann", "", None, "Zoë"]),
        "lastName": st.sampled_from(["Lee", None, "  "]),
        "emails": st.sampled_from([["a@x.com"], [], None, ["not an email"], ["B@X.com", "c@x.com"]]),
        "title": st.sampled_from([None, "CTO", "x" * 300]),
        "accountId": st.sampled_from([None, 1, 2]),
        "window": st.integers(min_value=0, max_value=2),
        "unreadable": st.booleans(),
    }),
    max_size=30,
)


def _extracted(rows: list[dict]) -> pd.DataFrame:
    frame = extracted_prospects(*({k: v for k, v in row.items() if k not in ("window", "unreadable")} for row in rows))
    frame[WINDOW_COLUMN] = pd.Series([WINDOWS[row["window"]] for row in rows], dtype="datetime64[ns, UTC]")
    frame[EXTRACT_ERROR_COLUMN] = [f"prospect {row['id']}: unreadable" if row["unreadable"] else None for row in rows]
    return frame


@settings(max_examples=30, deadline=None)
@given(rows=prospect_rows, size=st.integers(min_value=1, max_value=8))
def test_staging_in_chunks_equals_staging_the_whole(rows: list[dict], size: int) -> None:
    if not rows:
        return
    extracted = _extracted(rows)
    entity = MAPPINGS.entity("prospects")
    whole = stage_extracted(extracted, MAPPINGS, entity)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(routing, "STAGE_CHUNK_ROWS", size)
        chunked = stage_extracted(extracted, MAPPINGS, entity)
    pd.testing.assert_frame_equal(chunked, whole)
    assert list(chunked["outreach_id"]) == [row["id"] for row in rows]


def test_repeated_ids_are_staged_together_and_the_rest_in_order() -> None:
    ids = pd.Series([5, 1, 2, 5, 3, 4, 1, 6])
    chunks = [list(c) for c in staging_chunks(ids, 2)]
    assert chunks == [[2, 4], [5, 7], [0, 1, 3, 6]]


def test_routed_tasks_stage_the_same_in_chunks() -> None:
    tasks = MAPPINGS.entity("tasks")
    extracted = pd.DataFrame({
        "id": [1, 2, 3, 4, 5],
        "createdAt": T0, "updatedAt": T0, "dueAt": T0,
        "action": ["call", "in_person", "email", "in_person", "call"],
        "subject": ["a", "b", None, "d", "e"],
        "prospectId": pd.array([1, 2, None, 4, 5], dtype="Int64"),
        WINDOW_COLUMN: pd.Series([WINDOWS[0]] * 5, dtype="datetime64[ns, UTC]"),
    })
    whole = stage_extracted(extracted, MAPPINGS, tasks)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(routing, "STAGE_CHUNK_ROWS", 2)
        chunked = stage_extracted(extracted, MAPPINGS, tasks)
    pd.testing.assert_frame_equal(chunked, whole)
    assert list(chunked[routing.ROUTE_COLUMN]) == ["tasks", "meetings", "tasks", "meetings", "tasks"]
