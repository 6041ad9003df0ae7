"""An attribute a response leaves out reads as empty when staged; it does not fail the whole step.

Real HTTP against the Outreach sandbox: the read asks for a sparse fieldset without `middleName` and
`title`, so every resource object of the reply lacks them, as a reply that omits a requested attribute does.
"""

from __future__ import annotations

from datetime import UTC, datetime

from outreach_pipeline.clients.outreach import OutreachClient
from outreach_pipeline.engine.extract import extract_records
from outreach_pipeline.mapping.models import load_mapping_set
from outreach_pipeline.mapping.transform import outreach_fields, stage_records
from outreach_pipeline.sandbox.credentials import SANDBOX_OUTREACH_AUTH
from outreach_pipeline.sandbox.outreach.app import create_outreach_app
from outreach_pipeline.sandbox.outreach.settings import OutreachSettings
from outreach_pipeline.sandbox.outreach.store import OutreachStore
from outreach_pipeline.sandbox.server import serve_in_thread

START, END = datetime(2026, 11, 20, 5, tzinfo=UTC), datetime(2026, 11, 20, 6, tzinfo=UTC)
LEFT_OUT = {"middleName", "title"}


def test_a_left_out_attribute_stages_as_empty():
    store = OutreachStore("sqlite://")
    store.now = lambda: datetime(2026, 11, 20, 5, 30, tzinfo=UTC)
    store.bulk_insert("prospect", [
        {"updated_at": int(datetime(2026, 11, 20, 5, minute, tzinfo=UTC).timestamp() * 1000),
         "attributes": {"firstName": f"P{minute}", "middleName": "M", "title": "CTO", "emails": [f"p{minute}@x.com"]}}
        for minute in (5, 10)
    ])
    entity = load_mapping_set().entity("prospects")
    sparse = ",".join(name for name in outreach_fields(entity) if name not in LEFT_OUT)
    with serve_in_thread(create_outreach_app(store, OutreachSettings())) as served:
        client = OutreachClient(served.url, **SANDBOX_OUTREACH_AUTH)
        try:
            frame = extract_records(client, "prospects", START, END, fields={"fields[prospect]": sparse}).frame
        finally:
            client.close()
    assert len(frame) == 2 and not LEFT_OUT & set(frame.columns)

    staged = stage_records(frame, entity)

    assert staged["person_middle_name"].isna().all() and staged["person_job_title"].isna().all()
    assert staged["person_first_name"].tolist() == ["P5", "P10"]
    assert staged["main_location[email]"].tolist() == ["p5@x.com", "p10@x.com"]
    assert staged["validation_errors"].map(len).tolist() == [0, 0]
