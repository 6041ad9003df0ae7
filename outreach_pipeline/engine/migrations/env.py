"""Alembic environment of the sync ledger: runs on the connection ``upgrade_to_head`` (or the CLI) hands over.

The caller owns the transaction and the lock, so this file only configures the context. Autogenerate
compares against the ledger's metadata and writes ``UtcDateTime`` columns as ``sa.DateTime(timezone=True)``
(what they are in the database), so revisions never import application code.
"""

from __future__ import annotations

from typing import Any

from alembic import context

from outreach_pipeline.engine.ledger_schema import metadata
from outreach_pipeline.engine.migrations import VERSION_TABLE
from outreach_pipeline.engine.utc_datetime import UtcDateTime


def _render_item(type_: str, item: Any, autogen_context: Any) -> str | bool:
    if type_ == "type" and isinstance(item, UtcDateTime):
        return "sa.DateTime(timezone=True)"
    return False


if context.is_offline_mode():
    raise RuntimeError("the sync ledger's migrations run against a database; offline (--sql) mode is not supported")

context.configure(
    connection=context.config.attributes["connection"],
    target_metadata=metadata,
    render_item=_render_item,
    compare_type=True,
    version_table=VERSION_TABLE,
)
with context.begin_transaction():
    context.run_migrations()
