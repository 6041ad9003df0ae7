"""The blocking `required_fields_present` check, through real Dagster runs against the sandbox.

A window where most of a large enough batch of prospects lacks its email (a broken mapping or source, not a
few bad records) must not be loaded at all; a window with a few such prospects loads the rest, and those
fail alone. Windows are on 2026-11-01, which the seed leaves empty, so each holds only this module's records.
The default mapping does not require an email; these runs use a copy that does, as a user's mapping may.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import yaml

from outreach_pipeline.defs.resources import SyncSettings
from outreach_pipeline.mapping.models import DEFAULT_MAPPING_PATH
from outreach_pipeline_tests.pipeline.harness import outreach_clock_at
from outreach_pipeline_tests.pipeline.two_way import two_way_pipeline

BLOCKED_WINDOW = datetime(2026, 11, 1, 6, tzinfo=UTC)
PASSING_WINDOW = datetime(2026, 11, 1, 8, tzinfo=UTC)
ROWS = SyncSettings().required_missing_block_min_rows + 5


def _plant(pipe, window: datetime, without_email: int, with_email: int) -> None:
    rows = [{"attributes": {"firstName": "No", "lastName": f"Email {n}", "emails": []}, "relationships": {}}
            for n in range(without_email)]
    rows += [{"attributes": {"firstName": "Has", "lastName": f"Email {n}", "emails": [f"p{n}.{window:%H}@ok.example"]},
              "relationships": {}} for n in range(with_email)]
    with outreach_clock_at(pipe.sandbox, window + timedelta(minutes=5)):
        # Straight into the table, as legacy data: the API itself would accept a prospect without email too.
        pipe.sandbox.outreach_store.bulk_insert("prospect", rows)


def _email_required(home: Path) -> Path:
    raw = yaml.safe_load(DEFAULT_MAPPING_PATH.read_text(encoding="utf-8"))
    for field in raw["entities"]["prospects"]["fields"]:
        if field["workbooks"] == "main_location[email]":
            field["required"] = True
    home.mkdir(parents=True, exist_ok=True)
    path = home / "mapping.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def pipeline(home: Path, **seed):
    return two_way_pipeline(home, mapping_path=_email_required(home), **seed)


def _check(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    (evaluation,) = [e for e in result.get_asset_check_evaluations()
                     if e.check_name == "required_fields_present" and e.asset_key == dg.AssetKey(["staged", "people"])]
    return evaluation


def test_a_window_mostly_missing_required_fields_is_not_loaded_and_the_run_fails(tmp_path: Path) -> None:
    with pipeline(tmp_path, prospects=0, accounts=0, opportunities=0, seed_days=1) as pipe:
        _plant(pipe, BLOCKED_WINDOW, without_email=ROWS - 3, with_email=3)
        result = pipe.run(BLOCKED_WINDOW, raise_on_error=False)
        evaluation = _check(result)
        assert not evaluation.passed
        assert evaluation.severity == dg.AssetCheckSeverity.ERROR
        assert evaluation.metadata["rows_missing_required"].value == ROWS - 3
        # Blocked: the load never ran, so not even the three valid prospects were written.
        assert not result.asset_materializations_for_node(dg.AssetKey(["workbooks", "people"]).to_python_identifier())
        assert pipe.synced_rows("prospects") == {}
        assert not result.success


def test_a_few_rows_missing_required_fields_pass_the_check_and_the_rest_loads(tmp_path: Path) -> None:
    with pipeline(tmp_path, prospects=0, accounts=0, opportunities=0, seed_days=1) as pipe:
        _plant(pipe, PASSING_WINDOW, without_email=2, with_email=ROWS - 2)
        result = pipe.run(PASSING_WINDOW, raise_on_error=False)
        evaluation = _check(result)
        assert evaluation.passed
        assert evaluation.metadata["rows_missing_required"].value == 2
        assert len(pipe.synced_rows("prospects")) == ROWS - 2
        (materialization,) = result.asset_materializations_for_node(dg.AssetKey(["workbooks", "people"]).to_python_identifier())
        assert materialization.metadata["records_failed"].value == 2
