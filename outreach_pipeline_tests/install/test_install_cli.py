"""`outreach-pipeline install`, run in-process with click's CliRunner against served sandboxes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from outreach_pipeline.cli import main
from outreach_pipeline.sandbox.credentials import SANDBOX_API_KEY
from outreach_pipeline_tests.install.conftest import field_entry

CREDENTIAL_VARIABLES = (
    "WORKBOOKS_API_KEY", "WORKBOOKS_USERNAME", "WORKBOOKS_PASSWORD", "WORKBOOKS_BASE_URL",
    "OUTREACH_CLIENT_ID", "OUTREACH_CLIENT_SECRET", "OUTREACH_REDIRECT_URI", "OUTREACH_REFRESH_TOKEN",
    "OUTREACH_BASE_URL",
)  # fmt: skip


@pytest.fixture
def run_install(workbooks_url, outreach_url, tmp_path):
    """Invoke `install` against the served sandboxes with no credentials in the environment but `extra_env`."""

    def run(*args: str, extra_env: dict[str, str] | None = None) -> Result:
        env: dict[str, str | None] = {name: None for name in CREDENTIAL_VARIABLES}
        env.update({"DAGSTER_HOME": str(tmp_path / "dagster_home"), **(extra_env or {})})
        command = ["install", "--workbooks-url", workbooks_url, "--outreach-url", outreach_url, *args]
        return CliRunner().invoke(main, command, env=env)

    return run


def test_install_then_rerun_reports_present_and_preflight_passes(run_install):
    first = run_install()
    assert first.exit_code == 0, first.output
    assert "created" in first.output and "cf_person_outreach_id" in first.output
    assert "Preflight of accounts, prospects, opportunities: OK" in first.output

    second = run_install()
    assert second.exit_code == 0, second.output
    rows = [line for line in second.output.splitlines() if line.startswith("Private::")]
    assert rows and all("already present" in row for row in rows)
    assert "0 created" in second.output


def test_conflict_exits_1_and_api_key_is_never_printed(run_install, workbooks):
    workbooks.create_custom_field("Private::Crm::Opportunity", "Outreach Id", "boolean")

    result = run_install("--skip-preflight", extra_env={"WORKBOOKS_API_KEY": SANDBOX_API_KEY})

    assert result.exit_code == 1
    conflict_row = next(line for line in result.output.splitlines() if "cf_opportunity_outreach_id" in line)
    assert "conflict" in conflict_row and "'boolean'" in conflict_row and "'integer'" in conflict_row
    assert "Preflight" not in result.output
    assert SANDBOX_API_KEY not in result.output


def test_preflight_problem_in_a_mapping_file_exits_1_naming_the_field(run_install, mapping_variant, tmp_path):
    def rename(raw):
        field_entry(raw, "accounts", "industry")["workbooks"] = "organisation_industry"

    mapping_file = tmp_path / "mapping.yaml"
    mapping_file.write_text(yaml.safe_dump(mapping_variant(rename).model_dump(mode="json")), encoding="utf-8")

    result = run_install("--mapping", str(mapping_file))

    assert result.exit_code == 1, result.output
    assert "1 problem(s)" in result.output
    assert "accounts: Workbooks field organisation_industry (mapped from industry) is not a field" in result.output


def test_invalid_mapping_file_is_a_clear_error(run_install, tmp_path):
    mapping_file = Path(tmp_path / "broken.yaml")
    mapping_file.write_text("version: 1\nentities: {}\nsurprise: true\n", encoding="utf-8")

    result = run_install("--mapping", str(mapping_file))

    assert result.exit_code == 1
    assert "unknown key 'surprise'" in result.output and "Traceback" not in result.output


def test_rejected_credentials_are_a_clear_error_without_the_key(run_install):
    wrong_key = "not-the-sandbox-key-4711"

    result = run_install(extra_env={"WORKBOOKS_API_KEY": wrong_key})

    assert result.exit_code == 1
    assert "Error: GET /admin/custom_record_types.api" in result.output and "unrecognised_api_key" in result.output
    assert "Traceback" not in result.output and wrong_key not in result.output
