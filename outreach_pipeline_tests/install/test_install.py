"""`install` against a served Workbooks sandbox: creation, idempotency, conflicts and API-name checks."""

from __future__ import annotations

from outreach_pipeline.clients.workbooks import Filter, WorkbooksClient, WriteOp
from outreach_pipeline.engine.install import (
    InstallStatus,
    format_install_report,
    install,
    plan_custom_record_types,
)
from outreach_pipeline.mapping.models import MappingSet
from outreach_pipeline_tests.install.conftest import custom_field_entry

PERSON = "Private::Crm::Person"
SEQUENCE = "Private::CustomRecord::OutreachSequence"


def _expected_names(mapping: MappingSet) -> set[str]:
    return {spec.api_name for specs in mapping.custom_fields.values() for spec in specs}


def test_install_creates_everything_once_and_a_second_run_creates_nothing(workbooks, default_mapping):
    first = install(workbooks, default_mapping)

    assert first.ok and not first.present
    assert {item.name for item in first.created if item.kind == "custom field"} == _expected_names(default_mapping)
    assert [item.name for item in first.created if item.kind == "custom record type"] == [SEQUENCE]
    fields_after_first = len(workbooks.list_custom_fields())

    second = install(workbooks, default_mapping)

    assert second.ok and not second.created
    assert {item.status for item in second.items} == {"present"}
    assert len(second.present) == len(first.items)
    assert len(workbooks.list_custom_fields()) == fields_after_first
    assert len(list(workbooks.iter_records("admin/custom_record_types"))) == 1
    table = format_install_report(second)
    assert "cf_person_outreach_id" in table and "already present" in table
    assert table.splitlines()[-1] == f"0 created, {len(first.items)} already present, 0 conflict(s)"


def test_installed_fields_are_in_metadata_and_filterable(workbooks: WorkbooksClient, default_mapping):
    install(workbooks, default_mapping)

    (person_type,) = workbooks.metadata_types([PERSON])
    fields = {field["name"]: field for field in person_type["fields"]}
    assert fields["cf_person_outreach_id"]["datatype"] == "integer"
    assert fields["cf_person_sync_to_outreach"]["datatype"] == "boolean"
    assert fields["cf_person_outreach_sequence_state_updated_at"]["datatype"] == "datetime"
    state_options = [entry["value"] for entry in fields["cf_person_outreach_sequence_state"]["picklist"]]
    assert "Opted Out" in state_options and "Not Active" in state_options
    assert all(fields[name]["is_filterable"] for name in fields if name.startswith("cf_person_"))

    ops = [
        WriteOp(action="create", fields={"person_last_name": "Linked", "cf_person_outreach_id": 42,
                                         "cf_person_sync_to_outreach": True}),
        WriteOp(action="create", fields={"person_last_name": "Other", "cf_person_outreach_id": 7}),
    ]  # fmt: skip
    assert all(outcome.ok for outcome in workbooks.write_batch("crm/people", ops))
    linked = workbooks.get_page("crm/people", filters=[Filter(field="cf_person_outreach_id", op="eq", value=42)])
    assert [row["person_last_name"] for row in linked] == ["Linked"]
    flagged = workbooks.get_page("crm/people", filters=[Filter(field="cf_person_sync_to_outreach", op="true")])
    assert [row["person_last_name"] for row in flagged] == ["Linked"]

    sequence = WriteOp(action="create", fields={"name": "Welcome", "cf_outreach_sequence_outreach_id": 5,
                                                "cf_outreach_sequence_step_count": 3})  # fmt: skip
    assert workbooks.write_one("custom_record/outreach_sequences", sequence).ok
    found = workbooks.get_page(
        "custom_record/outreach_sequences", filters=[Filter(field="cf_outreach_sequence_outreach_id", op="eq", value=5)]
    )
    assert [(row["name"], row["cf_outreach_sequence_step_count"]) for row in found] == [("Welcome", 3)]


def test_field_with_another_data_type_is_a_conflict_and_left_unchanged(workbooks, default_mapping):
    workbooks.create_custom_field(PERSON, "Outreach Id", "text")

    report = install(workbooks, default_mapping)

    (conflict,) = report.conflicts
    assert conflict.status is InstallStatus.CONFLICT and conflict.name == "cf_person_outreach_id"
    assert "'text'" in conflict.detail and "'integer'" in conflict.detail
    assert len(report.created) == len(report.items) - 1
    (stored,) = [row for row in workbooks.list_custom_fields(PERSON) if row["value_column_name"] == "cf_person_outreach_id"]
    assert stored["data_type"] == "text"
    assert "1 conflict(s)" in format_install_report(report)


def test_api_name_workbooks_returns_must_match_the_mapping(workbooks, mapping_variant):
    def expect_other_name(raw):
        custom_field_entry(raw, PERSON, "cf_person_outreach_duplicate")["api_name"] = "cf_person_is_duplicate"

    mapping = mapping_variant(expect_other_name)

    created_run = install(workbooks, mapping)
    (mismatch,) = created_run.conflicts
    assert mismatch.status is InstallStatus.ERROR and mismatch.name == "cf_person_is_duplicate"
    assert "cf_person_outreach_duplicate" in mismatch.detail and "cf_person_is_duplicate" in mismatch.detail

    # Rerunning finds the field by its title and names both instead of adding a suffixed duplicate.
    rerun = install(workbooks, mapping)
    (by_title,) = rerun.conflicts
    assert by_title.status is InstallStatus.CONFLICT
    assert "exists as cf_person_outreach_duplicate" in by_title.detail and "cf_person_is_duplicate" in by_title.detail
    titles = [row["title"] for row in workbooks.list_custom_fields(PERSON)]
    assert titles.count("Outreach Duplicate") == 1


def test_picklist_missing_options_is_a_conflict(workbooks, default_mapping):
    workbooks.create_custom_field(PERSON, "Outreach Sequence State", "picklist", picklist_values=["Finished"])

    report = install(workbooks, default_mapping)

    (conflict,) = report.conflicts
    assert conflict.name == "cf_person_outreach_sequence_state" and "Opted Out" in conflict.detail


def test_custom_record_type_at_another_controller_blocks_its_fields(workbooks, default_mapping):
    workbooks.create_custom_record_type("Outreach Sequence", name_plural="Cadences")

    report = install(workbooks, default_mapping)

    record_type = next(item for item in report.items if item.kind == "custom record type")
    assert record_type.status is InstallStatus.CONFLICT
    assert "custom_record/cadences" in record_type.detail and "custom_record/outreach_sequences" in record_type.detail
    blocked = [item for item in report.items if item.record_type == SEQUENCE and item.kind == "custom field"]
    assert blocked and all(item.status is InstallStatus.ERROR for item in blocked)
    assert workbooks.list_custom_fields(SEQUENCE) == []
    assert {item.record_type for item in report.created} == {
        PERSON, "Private::Crm::Organisation", "Private::Crm::Opportunity", "Private::Activity::Task",
        "Private::Activity::Meeting",
    }  # fmt: skip


def test_record_type_names_are_derived_from_the_mapping(default_mapping):
    (plan,) = plan_custom_record_types(default_mapping)
    assert (plan.name, plan.name_plural, plan.controller_path) == (
        "Outreach Sequence", "Outreach Sequences", "custom_record/outreach_sequences",
    )  # fmt: skip
