"""A passing preflight is reused from Dagster's event store: same mapping, same API, young enough; never a failure.

The Outreach preflight asset is materialized on one instance over real HTTP; its materialization metadata says
whether the check ran or was reused and when it ran. The rules themselves (engine/preflight_reuse.py) are
checked pure at the end.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg

from outreach_pipeline.defs.resources import OutreachResource, SyncSettings
from outreach_pipeline.engine.preflight_reuse import PreflightStamp, reusable
from outreach_pipeline_tests.install.test_outreach_schema_preflight import (
    _outreach_preflight_asset,
    misspell_first_name,
    write_mapping,
)

PARTITION = "2026-11-02-10:00"


def _materialize(instance: dg.DagsterInstance, outreach_url: str, tmp_path: Path, settings: SyncSettings):
    resources = {"outreach": OutreachResource(base_url=outreach_url, token_store_path=str(tmp_path / "tokens.json")),
                 "sync_settings": settings}
    result = dg.materialize([_outreach_preflight_asset()], resources=resources, partition_key=PARTITION,
                            instance=instance, raise_on_error=False)
    materializations = result.asset_materializations_for_node("outreach__field_preflight")
    return result, ({k: v.value for k, v in materializations[0].metadata.items()} if materializations else None)


def test_a_passing_preflight_is_reused_until_the_mapping_changes_or_a_check_fails(
    outreach_url, mapping_variant, tmp_path
):
    # Entered, so Dagster's current definitions-state storage is this instance's, whatever an earlier test left.
    with dg.DagsterInstance.ephemeral() as instance:
        _, first = _materialize(instance, outreach_url, tmp_path, SyncSettings())
        assert first is not None and first["preflight"] == "ran"
        _, second = _materialize(instance, outreach_url, tmp_path, SyncSettings())
        assert second is not None and second["preflight"] == "reused"
        assert second["checked_at"] == first["checked_at"] and second["reused_from_run"]
        assert (second["mapping_hash"], second["api_base_url"]) == (first["mapping_hash"], outreach_url)
        _, every_run = _materialize(instance, outreach_url, tmp_path, SyncSettings(preflight_max_age_minutes=0))
        assert every_run is not None and every_run["preflight"] == "ran"

        broken = write_mapping(mapping_variant(misspell_first_name), tmp_path / "broken.yaml")
        failed, nothing = _materialize(instance, outreach_url, tmp_path, SyncSettings(mapping_path=str(broken)))
        assert not failed.success and nothing is None  # another mapping: checked, and it fails
        # The failure ends the reuse of the older pass: the default mapping is checked again.
        _, after_failure = _materialize(instance, outreach_url, tmp_path, SyncSettings())
        assert after_failure is not None and after_failure["preflight"] == "ran"


def test_the_reuse_rules() -> None:
    now = datetime(2026, 11, 29, 12, tzinfo=UTC)
    passed = PreflightStamp("abc", "https://api.outreach.io", now - timedelta(hours=1))
    wanted = PreflightStamp("abc", "https://api.outreach.io", now)
    six_hours = timedelta(hours=6)
    assert reusable(passed, None, wanted, six_hours)
    assert not reusable(passed, None, wanted, timedelta(0))
    assert not reusable(passed, None, wanted, timedelta(minutes=30))  # too old
    assert not reusable(passed, now - timedelta(minutes=5), wanted, six_hours)  # failed since
    assert reusable(passed, now - timedelta(hours=2), wanted, six_hours)  # failed before it passed
    assert not reusable(PreflightStamp("xyz", passed.api_base_url, passed.checked_at), None, wanted, six_hours)
    assert not reusable(PreflightStamp("abc", "http://127.0.0.1:8701", passed.checked_at), None, wanted, six_hours)
    assert not reusable(None, None, wanted, six_hours)
