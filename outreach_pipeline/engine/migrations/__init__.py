"""Schema migrations of the sync ledger (Alembic), applied by ``SyncLedger`` whenever it opens a database.

Rules:
* The ledger's tables change only through a revision under ``versions/``. Revision ``0001`` is exactly
  the schema the ledger had before migrations existed (made by ``metadata.create_all``); later revisions
  build on it.
* The revision is kept in ``sync_ledger_version``, not Alembic's default ``alembic_version``: the ledger
  may share a database with Dagster's own storage, which has its own Alembic history there.
* Opening brings the database to head. An empty database runs every revision. A ledger made before
  migrations (all four ledger tables, no version table) is stamped ``0001`` and upgraded, its rows
  untouched. A database already at head is only read, no lock taken.
* The upgrade is one transaction holding a lock, so processes opening the same ledger at once queue and
  the later ones find head: PostgreSQL takes a transaction-scoped advisory lock, SQLite's transactions
  begin with ``BEGIN IMMEDIATE`` (engine setup in ``ledger.py``). Both roll DDL back, so a revision that
  fails leaves the database at the revision it had.
* A database at a revision this code does not know (a newer release migrated it) is refused, never
  touched; so is a pre-migration ledger missing some of its tables, and a table in the ledger's metadata
  that no revision creates.
* There is no ``alembic.ini``: the configuration is built here, so the migrations ship inside the package.
  ``python -m outreach_pipeline.engine.migrations --help`` adds a revision or shows/applies the current one.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

BASELINE_REVISION = "0001"
VERSION_TABLE = "sync_ledger_version"
MIGRATIONS_DIR = Path(__file__).parent
# The tables of the baseline schema: their presence without a version table marks a pre-migration ledger.
BASELINE_TABLES = frozenset({"sync_record_state", "sync_history", "sync_pending_relation", "sync_run"})
_LOCK_KEY = zlib.crc32(b"sync_ledger:schema")


class LedgerSchemaError(Exception):
    """The ledger's database cannot be brought to the schema this code needs."""


class UnknownLedgerRevisionError(LedgerSchemaError):
    """The database is at a revision this code does not have (written by a newer release)."""

    def __init__(self, revision: str, head: str) -> None:
        self.revision = revision
        self.head = head
        super().__init__(
            f"the sync ledger is at schema revision {revision!r}, which this version of outreach-pipeline "
            f"(head {head!r}) does not know: run the release that migrated it, or a newer one"
        )


class PartialLegacyLedgerError(LedgerSchemaError):
    """A pre-migration ledger lacks some of the baseline tables, so stamping it would be a guess."""

    def __init__(self, missing: list[str]) -> None:
        self.missing = missing
        super().__init__(
            f"the sync ledger has no {VERSION_TABLE} table and only some of its tables (missing: "
            f"{', '.join(missing)}): restore it from a backup or point OUTREACH_PIPELINE_LEDGER_URL elsewhere"
        )


class UnmigratedTablesError(LedgerSchemaError):
    """A table in the ledger's metadata that no revision creates."""

    def __init__(self, tables: list[str]) -> None:
        self.tables = tables
        super().__init__(
            f"table(s) {', '.join(tables)} are declared in the ledger's metadata but no migration creates "
            "them: add a revision (python -m outreach_pipeline.engine.migrations revision -m '...')"
        )


def alembic_config(*extra_version_locations: Path) -> Config:
    """Alembic configuration of the ledger's migrations (plus further revision folders, e.g. in a test)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    locations = [MIGRATIONS_DIR / "versions", *extra_version_locations]
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", os.pathsep.join(str(p) for p in locations))
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    return config


def head_revision(config: Config | None = None) -> str:
    """The newest revision this code has."""
    head = ScriptDirectory.from_config(config or alembic_config()).get_current_head()
    assert head is not None, "the ledger's migrations have no revisions"
    return head


def current_revision(engine: Engine) -> str | None:
    """The database's revision, or None when it has no version table (empty or pre-migration)."""
    with engine.connect() as connection:
        return _read_revision(connection)


def upgrade_to_head(engine: Engine, metadata: sa.MetaData, config: Config | None = None) -> str:
    """Bring the database to head (see the module rules) and return the revision it is at."""
    config = config or alembic_config()
    head = head_revision(config)
    revision = current_revision(engine)
    if revision != head:
        with engine.begin() as connection:
            _lock(connection)
            revision = _upgrade_locked(connection, config, head)
    _check_tables(engine, metadata)
    return revision


def _lock(connection: Connection) -> None:
    # SQLite already holds the database's write lock: the engine begins every transaction IMMEDIATE.
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})


def _upgrade_locked(connection: Connection, config: Config, head: str) -> str:
    # Read again under the lock: another process may have upgraded while this one waited.
    revision = _read_revision(connection)
    if revision == head:
        return head
    script = ScriptDirectory.from_config(config)
    if revision is not None and revision not in {known.revision for known in script.walk_revisions()}:
        raise UnknownLedgerRevisionError(revision, head)
    config.attributes["connection"] = connection
    try:
        if revision is None and _is_legacy(connection):
            command.stamp(config, BASELINE_REVISION)
        command.upgrade(config, "head")
    finally:
        del config.attributes["connection"]
    return head


def _read_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_revision()


def _is_legacy(connection: Connection) -> bool:
    present = BASELINE_TABLES & set(sa.inspect(connection).get_table_names())
    if present and present != BASELINE_TABLES:
        raise PartialLegacyLedgerError(sorted(BASELINE_TABLES - present))
    return bool(present)


def _check_tables(engine: Engine, metadata: sa.MetaData) -> None:
    with engine.connect() as connection:
        existing = set(sa.inspect(connection).get_table_names())
    missing = sorted(name for name in metadata.tables if name not in existing)
    if missing:
        raise UnmigratedTablesError(missing)
