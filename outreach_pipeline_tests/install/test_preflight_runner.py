"""`run_preflight` against served Workbooks and Outreach sandboxes."""

from __future__ import annotations

import pytest

from outreach_pipeline.engine.install import install
from outreach_pipeline.engine.preflight import run_preflight
from outreach_pipeline_tests.install.conftest import field_entry

CORE = ["accounts", "prospects", "opportunities"]


def test_fails_before_install_naming_the_missing_fields_and_passes_after(workbooks, outreach, default_mapping):
    before = run_preflight(workbooks, outreach, default_mapping)

    assert any("cf_organisation_outreach_id" in problem and problem.startswith("accounts:") for problem in before)
    assert any("cf_person_sync_to_outreach" in problem for problem in before)
    assert any("cf_opportunity_outreach_sync_error" in problem for problem in before)
    assert any("Private::CustomRecord::OutreachSequence is not in metadata/types" in problem for problem in before)

    install(workbooks, default_mapping)

    assert run_preflight(workbooks, outreach, default_mapping) == []


def test_only_the_chosen_entities_are_checked(workbooks, outreach, default_mapping):
    problems = run_preflight(workbooks, outreach, default_mapping, entities=["accounts"])

    assert problems and all(problem.startswith("accounts:") for problem in problems)
    with pytest.raises(KeyError, match="no entity mapping 'leads'"):
        run_preflight(workbooks, outreach, default_mapping, entities=["leads"])


def test_renamed_or_unknown_fields_are_named(workbooks, outreach, default_mapping, mapping_variant):
    install(workbooks, default_mapping)

    def rename_and_add_unknown(raw):
        field_entry(raw, "prospects", "person_job_title")["workbooks"] = "person_job_titel"
        raw["entities"]["prospects"]["fields"].append({"outreach": "custom9", "workbooks": "biography"})

    problems = run_preflight(workbooks, outreach, mapping_variant(rename_and_add_unknown), entities=CORE)

    assert len(problems) == 2, problems
    assert "person_job_titel (mapped from title) is not a field of Private::Crm::Person" in problems[0]
    assert "prospect.custom9" in problems[1] and "not defined in /types" in problems[1]


def test_mistyped_fields_are_reported(workbooks, outreach, default_mapping, mapping_variant):
    install(workbooks, default_mapping)

    def mistype(raw):
        field_entry(raw, "prospects", "person_job_title")["transform"] = {"kind": "wb_date"}
        # custom3 is a `date` in the Outreach sandbox org: an integer transform cannot read it.
        raw["entities"]["prospects"]["fields"].append(
            {"outreach": "custom3", "workbooks": "person_salutation", "transform": "integer"}
        )

    problems = run_preflight(workbooks, outreach, mapping_variant(mistype), entities=CORE)

    assert any("person_job_title has datatype 'string'" in problem and "wb_date" in problem for problem in problems)
    assert any("prospect.custom3 has type 'date'" in problem for problem in problems)


def test_integration_owned_field_with_another_type_is_reported(workbooks, outreach, default_mapping):
    workbooks.create_custom_field("Private::Crm::Organisation", "Outreach Id", "text")
    install(workbooks, default_mapping)

    problems = run_preflight(workbooks, outreach, default_mapping, entities=CORE)

    assert problems == [
        "accounts: Workbooks field cf_organisation_outreach_id has datatype 'text', but the mapping's "
        "custom_fields declares 'integer' for it"
    ]
