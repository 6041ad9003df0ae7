"""The preflight checks every Outreach source a mapping reads against Outreach's schema, over real HTTP.

The schema is the service's own `/api/v2/schema/openapi.json` (the sandbox serves the document it is built
from); a service that does not serve it is checked against the packaged copy.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
import yaml
from click.testing import CliRunner

from outreach_pipeline.cli import main
from outreach_pipeline.clients.http import AuthenticationError
from outreach_pipeline.clients.outreach import OutreachClient
from outreach_pipeline.clients.outreach_schema import OPENAPI_PATH
from outreach_pipeline.defs.assets import OUTREACH_PREFLIGHT_KEY, build_preflights
from outreach_pipeline.defs.partitions import sync_windows
from outreach_pipeline.defs.resources import OutreachResource, SyncSettings, WorkbooksResource
from outreach_pipeline.engine.install import install
from outreach_pipeline.engine.preflight import fetch_outreach_schema, run_preflight
from outreach_pipeline.mapping.models import MappingSet
from outreach_pipeline.sandbox.credentials import SANDBOX_OUTREACH_AUTH
from outreach_pipeline.sandbox.faults import FaultInjector, FaultRule, SandboxMiddleware
from outreach_pipeline.sandbox.outreach.app import create_outreach_app
from outreach_pipeline.sandbox.outreach.settings import OutreachSettings
from outreach_pipeline.sandbox.outreach.store import OutreachStore
from outreach_pipeline.sandbox.server import serve_in_thread
from outreach_pipeline.settings import PipelineSettings
from outreach_pipeline_tests.install.conftest import field_entry
from outreach_pipeline_tests.install.test_install_cli import CREDENTIAL_VARIABLES

CORE = ["accounts", "prospects", "opportunities"]


def misspell_first_name(raw):
    field_entry(raw, "prospects", "person_first_name")["outreach"] = "fristName"


def write_mapping(mapping: MappingSet, path: Path) -> Path:
    path.write_text(yaml.safe_dump(mapping.model_dump(mode="json")), encoding="utf-8")
    return path


def test_the_live_schema_is_read_from_the_service(outreach, outreach_url):
    schema = fetch_outreach_schema(outreach)

    assert schema.source == f"{outreach_url}{OPENAPI_PATH}"
    assert {"firstName", "emails"} <= schema.types["prospect"].attributes.keys()
    assert schema.types["opportunity"].relationships["opportunityStage"].target_types == ("opportunityStage",)


def test_an_unknown_attribute_is_named_with_its_entity_and_the_file_to_fix(
    workbooks, outreach, default_mapping, mapping_variant
):
    install(workbooks, default_mapping)

    problems = run_preflight(workbooks, outreach, mapping_variant(misspell_first_name), entities=CORE)

    assert problems == [
        "prospects: Outreach has no attribute fristName on prospect (source 'fristName' of person_first_name); "
        "fix the source in the mapping file"
    ]


def test_unknown_relationships_and_related_attributes_are_named(workbooks, outreach, default_mapping, mapping_variant):
    install(workbooks, default_mapping)

    def misspell_relationships(raw):
        field_entry(raw, "prospects", "employer_link")["outreach"] = "acountId"
        field_entry(raw, "opportunities", "opportunity_stage")["outreach"] = "opportunityStage.nme"
        field_entry(raw, "opportunities", "organisation_id")["outreach"] = "assignedUsersId"  # a to-many
        field_entry(raw, "opportunities", "opportunity_contact_roles")["outreach"] = (
            "opportunityProspectRole[opportunityId].rolle"
        )

    problems = run_preflight(workbooks, outreach, mapping_variant(misspell_relationships), entities=CORE)

    assert [problem.split(" (source")[0] for problem in problems] == [
        "prospects: Outreach has no attribute acountId and no relationship acount on prospect",
        "opportunities: Outreach has no attribute nme on opportunityStage",
        "opportunities: Outreach relationship assignedUsers on opportunity is to-many, so it has no single id to read",
        "opportunities: Outreach has no attribute rolle on opportunityProspectRole",
    ]


@contextmanager
def outreach_answering_schema_with(status: int) -> Iterator[OutreachClient]:
    """A client of an Outreach that answers `status` to its schema document (and normally to the rest)."""
    rule = FaultRule(kind="status", status=status, path=OPENAPI_PATH)
    app = SandboxMiddleware(create_outreach_app(OutreachStore("sqlite://"), OutreachSettings()),
                            injector=FaultInjector([rule]))
    with serve_in_thread(app) as served:
        client = OutreachClient(served.url, **SANDBOX_OUTREACH_AUTH)
        try:
            yield client
        finally:
            client.close()


@pytest.mark.parametrize("status", [404, 403])
def test_without_a_served_schema_the_packaged_copy_is_used(workbooks, default_mapping, mapping_variant, status):
    install(workbooks, default_mapping)
    with outreach_answering_schema_with(status) as client:
        schema = fetch_outreach_schema(client)
        problems = run_preflight(workbooks, client, mapping_variant(misspell_first_name), entities=CORE)

    assert schema.source.startswith("the packaged outreach_openapi.json") and str(status) in schema.source
    assert len(problems) == 1 and "no attribute fristName on prospect" in problems[0]


def test_a_rejected_token_is_not_hidden_by_the_fallback():
    with outreach_answering_schema_with(401) as client, pytest.raises(AuthenticationError) as caught:
        fetch_outreach_schema(client)

    assert caught.value.status == 401 and caught.value.path == OPENAPI_PATH


def test_install_fails_naming_the_attribute_and_the_mapping_file(
    workbooks_url, outreach_url, mapping_variant, tmp_path
):
    mapping_file = write_mapping(mapping_variant(misspell_first_name), tmp_path / "mapping.yaml")
    env: dict[str, str | None] = {name: None for name in CREDENTIAL_VARIABLES}
    env["DAGSTER_HOME"] = str(tmp_path / "dagster_home")

    result = CliRunner().invoke(main, ["install", "--workbooks-url", workbooks_url, "--outreach-url", outreach_url,
                                       "--mapping", str(mapping_file)], env=env)

    assert result.exit_code == 1, result.output
    assert (
        f"prospects: Outreach has no attribute fristName on prospect (source 'fristName' of person_first_name); "
        f"fix the source in {mapping_file}"
    ) in result.output


def _outreach_preflight_asset() -> dg.AssetsDefinition:
    assets = build_preflights(sync_windows(PipelineSettings().partitions_start))
    return next(asset for asset in assets if asset.key == OUTREACH_PREFLIGHT_KEY)


def test_the_preflight_asset_fails_naming_the_attribute(
    workbooks, workbooks_url, outreach_url, default_mapping, mapping_variant, tmp_path
):
    install(workbooks, default_mapping)
    mapping_file = write_mapping(mapping_variant(misspell_first_name), tmp_path / "mapping.yaml")
    resources = {
        "outreach": OutreachResource(base_url=outreach_url, token_store_path=str(tmp_path / "tokens.json")),
        "workbooks": WorkbooksResource(base_url=workbooks_url),
        "sync_settings": SyncSettings(mapping_path=str(mapping_file)),
    }
    partition = datetime(2026, 11, 2, 10, tzinfo=UTC).strftime("%Y-%m-%d-%H:%M")

    # Instances entered, so Dagster's current definitions-state storage is theirs, whatever an earlier test left.
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize([_outreach_preflight_asset()], resources=resources, partition_key=partition,
                                raise_on_error=False, instance=instance)

    assert not result.success
    failure = next(event for event in result.all_events if event.event_type_value == "STEP_FAILURE")
    assert "prospects: Outreach has no attribute fristName on prospect" in str(failure.step_failure_data.error)
    assert str(mapping_file) in str(failure.step_failure_data.error)

    with dg.DagsterInstance.ephemeral() as instance:
        passing = dg.materialize([_outreach_preflight_asset()], resources={**resources, "sync_settings": SyncSettings()},
                                 partition_key=partition, instance=instance)
    assert passing.success
