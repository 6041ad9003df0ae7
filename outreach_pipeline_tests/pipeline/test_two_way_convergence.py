"""Property (hypothesis), over real HTTP through Dagster: after random edits on both sides, including the same
field on both, one sync cycle brings every mapped field into agreement, and the next cycle, with no further
edits, makes 0 writes in either direction.

One sandbox serves every example: each example edits in its own hourly window and syncs the windows after it,
so examples stay independent while the sandbox start is paid once. Examples are few and small (a minute of
budget: each cycle is a Dagster run).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from outreach_pipeline_tests.pipeline.harness import Pipeline
from outreach_pipeline_tests.pipeline.two_way import (
    FIRST_EDIT_WINDOW,
    HOUR,
    SMALL_SEED,
    TO_OUTREACH,
    TO_WORKBOOKS_PEOPLE,
    create_workbooks,
    edit_prospect,
    edit_workbooks,
    outreach_writes,
    person_fields,
    prospect,
    run_assets,
    set_clocks,
    two_way_pipeline,
    workbooks_writes,
)

PEOPLE = 2
#: (Workbooks field, Outreach attribute) edited by the examples.
FIELDS = (("person_first_name", "firstName"), ("person_job_title", "title"), ("person_last_name", "lastName"))
VALUES = {"person_first_name": ["Ann", "Bea", None], "person_job_title": ["CEO", "CTO", None],
          "person_last_name": ["Lee", "Kim"]}  # a Person needs a last name in Workbooks

edits = st.lists(
    st.tuples(
        st.integers(0, PEOPLE - 1),
        st.sampled_from(["outreach", "workbooks"]),
        st.sampled_from([name for name, _ in FIELDS]),
        st.integers(0, 2),
        st.integers(1, 50),  # minutes into the edit window
    ),
    min_size=1,
    max_size=5,
)


def _sides(pipe: Pipeline, person_id: int, outreach_id: int) -> tuple[dict, dict]:
    person, record = person_fields(pipe, person_id), prospect(pipe, outreach_id)
    return ({name: person.get(name) or None for name, _ in FIELDS},
            {name: record.attributes.get(attribute) or None for name, attribute in FIELDS})


def test_random_two_way_edits_converge_and_the_next_cycle_writes_nothing(tmp_path: Path) -> None:
    with two_way_pipeline(tmp_path, **SMALL_SEED) as pipe:
        both = TO_WORKBOOKS_PEOPLE + TO_OUTREACH
        set_clocks(pipe, FIRST_EDIT_WINDOW + HOUR / 6)
        ids = [create_workbooks(pipe, "crm/people", {"person_first_name": "Start", "person_last_name": f"P{i}",
                                                     "cf_person_sync_to_outreach": True})["id"]
               for i in range(PEOPLE)]
        run_assets(pipe, FIRST_EDIT_WINDOW, both)
        links = [int(person_fields(pipe, i)["cf_person_outreach_id"]) for i in ids]
        windows = iter(FIRST_EDIT_WINDOW + HOUR * (1 + 2 * n) for n in range(100))

        @settings(max_examples=2, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
        @given(edits)
        # Always: the same field on both sides (Workbooks later), and another field on one side.
        @example([(0, "outreach", "person_job_title", 0, 10), (0, "workbooks", "person_job_title", 1, 20),
                  (1, "outreach", "person_first_name", 1, 30)])
        def converges(sequence: list[tuple[int, str, str, int, int]]) -> None:
            edit_window = next(windows)
            for person, side, name, choice, minute in sorted(sequence, key=lambda edit: edit[4]):
                options = VALUES[name]
                value = options[choice % len(options)]
                set_clocks(pipe, edit_window + timedelta(minutes=minute))
                if side == "workbooks":
                    edit_workbooks(pipe, "crm/people", ids[person], {name: value})
                else:
                    attribute = dict(FIELDS)[name]
                    edit_prospect(pipe, links[person], {attribute: value})
            # Cycle 1 in the next hour (its writes are read back there); cycle 2 reads them back.
            set_clocks(pipe, edit_window + HOUR + timedelta(minutes=10))
            run_assets(pipe, edit_window, both)
            before = (outreach_writes(pipe), workbooks_writes(pipe))
            run_assets(pipe, edit_window + HOUR, both)
            assert (outreach_writes(pipe), workbooks_writes(pipe)) == before, sequence
            for person_id, outreach_id in zip(ids, links, strict=True):
                workbooks_side, outreach_side = _sides(pipe, person_id, outreach_id)
                assert workbooks_side == outreach_side, sequence

        converges()
