"""A broken record in an Outreach page fails alone: the rest of its page and window is extracted.

The API is a small server speaking Outreach's wire format over real HTTP, serving one page where one
prospect has an unparseable `updatedAt` and another an unreadable relationship.
"""

from datetime import UTC, datetime

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from outreach_pipeline.clients.outreach import OutreachClient
from outreach_pipeline.engine.extract import EXTRACT_ERROR_COLUMN, extract_records
from outreach_pipeline.sandbox.credentials import SANDBOX_OUTREACH_AUTH
from outreach_pipeline.sandbox.server import serve_in_thread

START, END = datetime(2026, 11, 20, 5, tzinfo=UTC), datetime(2026, 11, 20, 6, tzinfo=UTC)


def _prospect(record_id: int, updated_at: str, account: object = None) -> dict:
    return {
        "type": "prospect", "id": record_id,
        "attributes": {"firstName": f"P{record_id}", "createdAt": "2026-11-01T00:00:00.000Z", "updatedAt": updated_at},
        "relationships": {"account": {"data": account}},
    }


async def _token(request: Request) -> JSONResponse:
    return JSONResponse({"access_token": "t", "token_type": "bearer", "expires_in": 7200, "refresh_token": "r2"})


async def _prospects(request: Request) -> JSONResponse:
    return JSONResponse(
        {"data": [
            _prospect(1, "2026-11-20T05:00:00.000Z"),
            _prospect(2, "the day after tomorrow"),
            _prospect(3, "2026-11-20T05:10:00.000Z", account={"type": "account"}),  # to-one without an id
            _prospect(4, "2026-11-20T05:20:00.000Z", account={"type": "account", "id": 9}),
        ], "links": {}},
        media_type="application/vnd.api+json",
    )


def test_unreadable_records_are_kept_as_failures_and_the_rest_is_extracted():
    app = Starlette(routes=[Route("/oauth/token", _token, methods=["POST"]), Route("/api/v2/prospects", _prospects)])
    with serve_in_thread(app) as server:
        client = OutreachClient(server.url, **SANDBOX_OUTREACH_AUTH)
        try:
            frame = extract_records(client, "prospects", START, END).frame
        finally:
            client.close()
    by_id = frame.set_index("id")
    assert sorted(by_id.index) == [1, 2, 3, 4]
    assert by_id.loc[1, EXTRACT_ERROR_COLUMN] is None and by_id.loc[4, "accountId"] == 9
    assert "prospect 2" in by_id.loc[2, EXTRACT_ERROR_COLUMN] and "updatedAt" in by_id.loc[2, EXTRACT_ERROR_COLUMN]
    assert "prospect 3" in by_id.loc[3, EXTRACT_ERROR_COLUMN] and "account" in by_id.loc[3, EXTRACT_ERROR_COLUMN]
    # Unreadable rows sit in the range's last window, so a ranged run stores (and retries) them.
    assert frame["sync_window"].notna().all()
