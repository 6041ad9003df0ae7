"""Acceptance: the code location loads in Dagster's own CLI and exposes partitions, schedule, lineage and checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from outreach_pipeline.defs.assets import FLOWS, OUTREACH_PREFLIGHT_KEY, PREFLIGHT_KEY
from outreach_pipeline.defs.assets_outreach import REVERSE_KEYS
from outreach_pipeline.defs.dry_run import PLAN_KEY

VENV_BIN = Path(sys.executable).parent


@pytest.fixture
def defs():
    """The code location's Definitions, resolved under a live instance.

    Dagster's definitions-load context keeps a weak reference to the last instance it saw; after another
    test's temporary instance is gone, resolving outside any instance fails, so give it one.
    """
    from outreach_pipeline.definitions import defs as code_location

    with dg.instance_for_test():
        yield code_location()


def test_dagster_definitions_validate_passes(tmp_path: Path) -> None:
    completed = subprocess.run(
        [str(VENV_BIN / "dagster"), "definitions", "validate", "-m", "outreach_pipeline.definitions"],
        capture_output=True, text=True, timeout=120, env={"DAGSTER_HOME": str(tmp_path), "PATH": str(VENV_BIN)},
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr


def _dg(tmp_path: Path, *args: str, **environ: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "dg"), *args], cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True,
        timeout=180, env={"DAGSTER_HOME": str(tmp_path), "PATH": str(VENV_BIN), "HOME": str(tmp_path), **environ},
        check=False,
    )


def test_dg_check_and_list_defs_load_the_project(tmp_path: Path) -> None:
    checked = _dg(tmp_path, "check", "defs")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    listed = _dg(tmp_path, "list", "defs", "--json")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "workbooks/people" in listed.stdout and "outreach_send_receive" in listed.stdout


def test_a_bad_setting_is_a_load_error_naming_the_variable(tmp_path: Path) -> None:
    checked = _dg(tmp_path, "check", "defs", OUTREACH_PIPELINE_SCHEDULE_MINUTE="75")
    assert checked.returncode != 0
    assert "OUTREACH_PIPELINE_SCHEDULE_MINUTE" in checked.stdout + checked.stderr


def test_every_asset_is_hourly_partitioned_in_utc(defs: dg.Definitions) -> None:
    graph = defs.resolve_asset_graph()
    keys = [OUTREACH_PREFLIGHT_KEY, PREFLIGHT_KEY, *(k for f in FLOWS for k in (f.extract_key, f.staged_key, f.load_key))]
    keys += [f.holders_key for f in FLOWS if f.holders_key is not None]
    keys += list(REVERSE_KEYS)  # Workbooks -> Outreach: changed, written and linked per record type
    keys.append(PLAN_KEY)  # the dry run's plan (defs/dry_run.py)
    # 7 Outreach -> Workbooks flows x 3, 2 preflights, 1 holders asset, 4 Workbooks -> Outreach flows x 3, the plan.
    assert len(keys) == len(set(keys)) == len(graph.get_all_asset_keys()) == 37, sorted(graph.get_all_asset_keys())
    for key in keys:
        partitions = graph.get(key).partitions_def
        assert isinstance(partitions, dg.HourlyPartitionsDefinition), key
        assert partitions.timezone == "UTC"


def test_first_sync_sensor_runs_by_default_and_the_dry_run_is_not_in_the_sync_jobs(defs: dg.Definitions) -> None:
    sensor = defs.resolve_sensor_def("first_sync")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.job_name == "full_sync_job"
    for job in ("outreach_to_workbooks_job", "full_sync_job"):
        assert PLAN_KEY not in defs.resolve_job_def(job).asset_layer.executable_asset_keys


def test_send_receive_schedule_runs_by_default(defs: dg.Definitions) -> None:
    schedule = defs.resolve_schedule_def("outreach_send_receive")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.job_name == "outreach_to_workbooks_job"


def test_staged_assets_declare_checks_and_loads_declare_failure_rate(defs: dg.Definitions) -> None:
    check_keys = {(key.asset_key, key.name) for key in defs.resolve_asset_graph().asset_check_keys}
    for flow in FLOWS:
        assert (flow.staged_key, "no_duplicate_outreach_ids") in check_keys
        assert (flow.staged_key, "required_fields_present") in check_keys
        assert (flow.load_key, "failure_rate") in check_keys
