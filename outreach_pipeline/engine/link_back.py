"""The link-back of the Workbooks -> Outreach direction (its step 3, ``engine/load_outreach.py``): the Outreach Id
of each record created in (or adopted from) Outreach, and Outreach Duplicate / Outreach Sync Error with its message
on each record Outreach refused, written onto the Workbooks records in batch requests of up to 100.

Rules: lock versions are read fresh (the record may have changed since the window was read); a record deleted
since is left out; any object Workbooks refuses fails the step, naming the records (a link that is not written
would make the next run create the record again).
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from outreach_pipeline.clients.http import ApiError
from outreach_pipeline.clients.workbooks import MAX_OBJECTS_PER_WRITE, WorkbooksClient, WriteOp
from outreach_pipeline.engine.load_outreach import Flag, OnDone
from outreach_pipeline.mapping.models import EntityMapping


def write_links(
    client: WorkbooksClient, entity: EntityMapping, results: pd.DataFrame, on_done: OnDone | None = None
) -> dict[str, int]:
    """Write the Outreach Id of created/adopted records and the flags of refused ones back to Workbooks, one batch
    request at a time (``on_done`` is told each batch's Workbooks ids)."""
    flags = entity.flags
    wanted: dict[int, dict[str, Any]] = {}
    for row in results.to_dict("records"):
        workbooks_id = int(row["workbooks_id"])
        if row.get("link") and not pd.isna(row.get("outreach_id")):
            fields = json.loads(row["fields"]) if isinstance(row.get("fields"), str) else {}
            link = int(row["outreach_id"])
            wanted[workbooks_id] = {**fields, entity.match.link_key: f"{entity.match.link_prefix}{link}"
                                    if entity.match.link_prefix else link}
        elif row.get("flag") == Flag.DUPLICATE and flags is not None and flags.duplicate:
            wanted[workbooks_id] = {flags.duplicate: True}
        elif row.get("flag") == Flag.SYNC_ERROR and flags is not None:
            wanted[workbooks_id] = {flags.sync_error: True, flags.sync_error_message: row.get("error")}
    if not wanted:
        return {"links_written": 0, "flags_written": 0}
    # Fresh lock versions: the record may have changed since the window was read.
    current = {int(r["id"]): r for r in client.lookup(entity.workbooks_controller, "id", sorted(wanted),
                                                      ["id", "lock_version"])}
    ops = [
        WriteOp(action="update", id=workbooks_id, lock_version=int(current[workbooks_id]["lock_version"]), fields=fields)
        for workbooks_id, fields in wanted.items() if workbooks_id in current
    ]
    outcomes = []
    for offset in range(0, len(ops), MAX_OBJECTS_PER_WRITE):
        batch = ops[offset : offset + MAX_OBJECTS_PER_WRITE]
        outcomes += client.write_batch(entity.workbooks_controller, batch)
        if on_done is not None:
            on_done(int(op.id) for op in batch if op.id is not None)
    refused = [op.id for op, outcome in zip(ops, outcomes, strict=True) if not outcome.ok]
    if refused:
        raise ApiError(f"Workbooks refused the link-back of {entity.name} records {refused[:20]}",
                       method="PUT", path=f"/{entity.workbooks_controller}.api")
    links = sum(1 for fields in wanted.values() if entity.match.link_key in fields)
    return {"links_written": links, "flags_written": len(ops) - links}
