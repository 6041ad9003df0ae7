"""Acceptance: the code location loads in Dagster's own CLI and exposes partitions, schedule, lineage and checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from outreach_pipeline.definitions import build_definitions
from outreach_pipeline.defs.assets import FLOWS, OUTREACH_PREFLIGHT_KEY, PREFLIGHT_KEY
from outreach_pipeline.defs.assets_outreach import REVERSE_FLOWS, REVERSE_KEYS, WRITE_STEP
from outreach_pipeline.defs.dry_run import PLAN_KEY
from outreach_pipeline.defs.graph import MAPPING_METADATA_KEY, mapped_entities
from outreach_pipeline.defs.groups import GROUP_DESCRIPTIONS, Group
from outreach_pipeline.mapping.models import load_mapping_set
from outreach_pipeline.settings import ExecutorKind, PipelineSettings

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
    keys += [f.referenced_key for f in FLOWS if f.referenced_key is not None]
    keys += list(REVERSE_KEYS)  # Workbooks -> Outreach: changed, written and linked per record type
    keys.append(PLAN_KEY)  # the dry run's plan (defs/dry_run.py)
    # 7 Outreach -> Workbooks flows x 3, 2 preflights, 1 holders asset, 3 referenced-record assets (accounts,
    # prospects, tasks), 4 Workbooks -> Outreach flows x 3, the plan.
    assert len(keys) == len(set(keys)) == len(graph.get_all_asset_keys()) == 40, sorted(graph.get_all_asset_keys())
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
    stopped = build_definitions(PipelineSettings(first_sync_on_start=False), resources=defs.resources)
    assert stopped.resolve_sensor_def("first_sync").default_status == dg.DefaultSensorStatus.STOPPED


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
    # Workbooks -> Outreach: each write asset has the check too, all in one step after the one write step.
    for flow in REVERSE_FLOWS:
        assert (flow.write_key, "failure_rate") in check_keys
    job = defs.resolve_job_def("outreach_to_workbooks_job")
    steps = [name for name in job.graph.node_names() if name.endswith("_failure_rate")]
    assert sorted(steps) == sorted([f"{flow.load_key.to_python_identifier()}_failure_rate" for flow in FLOWS]
                                   + [f"{WRITE_STEP}_failure_rate"])
    # Both directions' checks are evaluated per window (partitioned, as the assets they judge), each in the step
    # after the step it judges.
    graph = job.asset_layer.asset_graph
    for flow in FLOWS:
        assert graph.get(dg.AssetCheckKey(flow.load_key, "failure_rate")).partitions_def is not None
    for flow in REVERSE_FLOWS:
        assert graph.get(dg.AssetCheckKey(flow.write_key, "failure_rate")).partitions_def is not None
    upstream = {dep.node.name for dep in job.graph.dependency_structure.all_upstream_outputs_from_node(
        f"{WRITE_STEP}_failure_rate")}
    assert upstream == {WRITE_STEP}


def test_assets_launched_from_the_graph_run_on_the_jobs_executor(defs: dg.Definitions) -> None:
    """The asset graph's launches use Dagster's implicit asset job: it must not fall back to one subprocess
    per step (the multiprocess default) while the jobs run in process."""
    implicit = defs.resolve_implicit_global_asset_job_def().executor_def
    assert implicit is defs.resolve_job_def("outreach_to_workbooks_job").executor_def
    assert implicit.name == "in_process"
    with dg.instance_for_test():  # the Celery setting moves graph launches to the workers too
        celery = build_definitions(PipelineSettings(executor=ExecutorKind.CELERY))
        assert celery.resolve_implicit_global_asset_job_def().executor_def.name == "celery"


def test_groups_are_the_key_prefixes_and_every_asset_names_its_group(defs: dg.Definitions) -> None:
    graph = defs.resolve_asset_graph()
    groups = {}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.group_name == key.path[0], (key, node.group_name)
        groups.setdefault(node.group_name, []).append(key)
        assert f"Group `{node.group_name}`: {GROUP_DESCRIPTIONS[Group(node.group_name)]}" in node.description, key
    assert set(groups) == {str(group) for group in Group}  # the three prefixes and the dry run's plan
    assert defs.metadata["group_descriptions"].value == {str(g): text for g, text in GROUP_DESCRIPTIONS.items()}


def test_assets_applying_a_mapping_show_it_as_a_table(defs: dg.Definitions) -> None:
    """Column lineage is drawn only by Dagster+: the open-source UI gets the mapping as a table."""
    graph = defs.resolve_asset_graph()
    mappings = load_mapping_set()
    for key, entity in mapped_entities().items():
        node = graph.get(key)
        fields = [field for name in mappings.route_entities(entity) for field in mappings.entity(name).fields]
        table = node.metadata[MAPPING_METADATA_KEY]
        assert [(row.data["outreach"], row.data["workbooks"]) for row in table.records] == \
            [(field.outreach, field.workbooks) for field in fields], key
        for field in fields:  # each field's row, in the description's Markdown table
            assert f"| {field.outreach} | {field.workbooks} |" in node.description, (key, field.workbooks)
    people = graph.get(dg.AssetKey(["staged", "people"]))
    assert "| prospects | emails[0] | main_location[email] | string (max 255) | both | personal, conflict: latest_wins |" \
        in people.description


def test_the_graph_runs_in_data_flow_order_accounts_first(defs: dg.Definitions) -> None:
    """Edges point the way data flows: every extract reads only Outreach (after the preflight), records pulled
    in because others point at them are their own assets downstream of the extracts pointing at them, and the
    loads run organisations, then people, then what links to people."""
    graph = defs.resolve_asset_graph()
    order = list(graph.toposorted_asset_keys)
    levels = {key: level for level, keys in enumerate(graph.toposorted_asset_keys_by_level) for key in keys}
    flows = {flow.outreach_name: flow for flow in FLOWS}
    for flow in FLOWS:
        assert graph.get(flow.extract_key).parent_keys == {OUTREACH_PREFLIGHT_KEY}, flow.extract_key
        if flow.referenced_key is not None:  # downstream of what points at it, upstream of its staging
            pointing = {flows[name].extract_key for name, _ in flow.referenced_by}
            assert pointing | {flow.extract_key} <= graph.get(flow.referenced_key).parent_keys
            assert graph.get(flow.staged_key).parent_keys == {flow.extract_key, flow.referenced_key}
    accounts, prospects, opportunities = (flows[name] for name in ("accounts", "prospects", "opportunities"))
    extracts = [flow.extract_key for flow in FLOWS]
    assert min(extracts, key=order.index) == accounts.extract_key  # accounts first
    loads = [accounts.load_key, prospects.load_key, opportunities.load_key]
    assert sorted(loads, key=order.index) == loads
    assert levels[accounts.load_key] < levels[prospects.load_key] < levels[opportunities.load_key]
    # Accounts' assets wait for no other entity's staging or load: only for reads of Outreach.
    reads = {OUTREACH_PREFLIGHT_KEY, PREFLIGHT_KEY, *extracts, *(f.referenced_key for f in FLOWS if f.referenced_key)}
    for key in accounts.keys:
        assert graph.get_ancestor_asset_keys(key) - set(accounts.keys) <= reads, key
