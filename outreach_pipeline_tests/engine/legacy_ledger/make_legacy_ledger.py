"""Regenerates the legacy ledger fixtures: a ledger written by the code of the baseline schema (commit 40a9bd2).

The fixtures are what a deployed ledger looks like before migrations existed: no ``alembic_version`` table,
tables made by ``metadata.create_all``, SQLite holding naive UTC datetimes. They are generated once with
that commit's ``engine/ledger.py`` and committed; regenerating them with today's ledger would prove nothing.

    git show 40a9bd2:outreach_pipeline/engine/ledger.py > /tmp/ledger_40a9bd2.py
    .venv/bin/python outreach_pipeline_tests/engine/legacy_ledger/make_legacy_ledger.py /tmp/ledger_40a9bd2.py

Writes ``sqlite.sql`` (``sqlite3`` dump), ``postgresql.sql`` (``pg_dump --inserts``, psql meta-commands dropped) and ``expected.json``
(everything the old code read back, which the upgraded ledger must read back the same).
"""

from __future__ import annotations

import importlib.util
import json
import sqlite3
import subprocess
import sys
import tempfile
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa

HERE = Path(__file__).parent
POSTGRES_SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432"
ENTITIES = ("accounts", "prospects")
WINDOW_1 = (datetime(2026, 11, 28, 10, tzinfo=UTC), datetime(2026, 11, 28, 11, tzinfo=UTC))
WINDOW_2 = (datetime(2026, 11, 28, 11, tzinfo=UTC), datetime(2026, 11, 28, 12, tzinfo=UTC))
PLUS_TWO = timezone(timedelta(hours=2))


def _load_module(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location("legacy_ledger_40a9bd2", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves the module's annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def _record_history(old: Any, url: str) -> dict[str, Any]:
    ledger = old.SyncLedger(url)
    window_1 = old.SyncWindow(start=WINDOW_1[0], end=WINDOW_1[1])
    # An offset other than UTC on the way in: the old code converted it, the fixture must hold UTC.
    window_2 = old.SyncWindow(start=WINDOW_2[0].astimezone(PLUS_TWO), end=WINDOW_2[1].astimezone(PLUS_TWO))
    outcome = old.RecordOutcome
    pending = old.PendingRelation

    ledger.start_run("run-1", "accounts", window_1)
    ledger.record_outcomes(
        "run-1",
        window_1,
        [
            outcome(
                entity="accounts",
                outreach_id=7,
                outcome="created",
                workbooks_id=7001,
                outreach_updated_at=datetime(2026, 11, 28, 10, 5, 30, 123456, tzinfo=UTC),
                values={"name": "Acme Ltd", "website": "acme.example"},
                diff={"name": "Acme Ltd", "website": "acme.example"},
            )
        ],
    )
    ledger.finish_run("run-1", "accounts")

    ledger.start_run("run-1", "prospects", window_1)
    ledger.record_outcomes(
        "run-1",
        window_1,
        [
            outcome(
                entity="prospects",
                outreach_id=1,
                outcome="created",
                workbooks_id=9001,
                outreach_updated_at=datetime(2026, 11, 28, 12, 15, tzinfo=PLUS_TWO),
                values={"person_name": "Ann Example", "company": None, "score": 3},
                diff={"person_name": "Ann Example", "score": 3},
                pending_relations=[
                    pending(entity="prospects", outreach_id=1, field="organisation",
                            target_entity="accounts", target_outreach_id=8),
                ],
            ),
            outcome(
                entity="prospects",
                outreach_id=2,
                outcome="failed",
                reason="invalid",
                error="prospect 2: main_location[email] is blank (required)",
            ),
            outcome(entity="prospects", outreach_id=3, outcome="skipped", reason="sync_disabled"),
        ],
    )
    ledger.finish_run("run-1", "prospects")

    # Run 2 dies before finish_run: its finished_at stays empty.
    ledger.start_run("run-2", "prospects", window_2)
    ledger.record_outcomes(
        "run-2",
        window_2,
        [
            outcome(
                entity="prospects",
                outreach_id=1,
                outcome="updated",
                workbooks_id=9001,
                outreach_updated_at=datetime(2026, 11, 28, 11, 40, 1, tzinfo=UTC),
                values={"person_name": "Ann Example-Smith", "company": "Acme Ltd", "score": 3},
                diff={"person_name": "Ann Example-Smith", "company": "Acme Ltd"},
            ),
            outcome(
                entity="prospects",
                outreach_id=2,
                outcome="created",
                workbooks_id=9002,
                outreach_updated_at=datetime(2026, 11, 28, 11, 2, tzinfo=UTC),
                values={"person_name": "Bo Ünïcode", "company": "Acme Ltd", "score": None},
                diff={"person_name": "Bo Ünïcode"},
                pending_relations=[
                    pending(entity="prospects", outreach_id=2, field="organisation",
                            target_entity="accounts", target_outreach_id=9),
                ],
            ),
            outcome(
                entity="prospects",
                outreach_id=4,
                outcome="failed",
                error="Workbooks refused prospect 4: lock_version is stale",
            ),
        ],
    )
    ledger.record_outcomes(
        "run-2",
        window_2,
        [outcome(entity="prospects", outreach_id=3, outcome="skipped", reason="stale_version")],
    )
    ledger.start_run("run-3", "accounts", window_2)

    expected = {
        "states": {
            entity: [s.model_dump(mode="json") for s in ledger.get_states(entity, range(20)).values()]
            for entity in ENTITIES
        },
        "history": {
            f"{entity}/{outreach_id}": [h.model_dump(mode="json") for h in ledger.history(entity, outreach_id)]
            for entity in ENTITIES
            for outreach_id in range(20)
            if ledger.history(entity, outreach_id)
        },
        "runs": {
            f"{run_id}/{entity}": ledger.run_summary(run_id, entity).model_dump(mode="json")
            for run_id, entity in [
                ("run-1", "accounts"), ("run-1", "prospects"), ("run-2", "prospects"), ("run-3", "accounts")
            ]
        },
        "pending": [p.model_dump(mode="json") for p in ledger.pending_relations()],
        "failed_ids": {entity: ledger.failed_ids(entity) for entity in ENTITIES},
    }
    ledger.dispose()
    return expected


def main(old_ledger_module: str) -> None:
    old = _load_module(Path(old_ledger_module))
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "sync_ledger.db"
        expected = _record_history(old, f"sqlite:///{path}")
        with sqlite3.connect(path) as connection:
            dump = "\n".join(connection.iterdump()) + "\n"
    (HERE / "sqlite.sql").write_text(dump, encoding="utf-8")

    name = f"legacy_ledger_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(f"{POSTGRES_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        postgres_expected = _record_history(old, f"{POSTGRES_SERVER}/{name}")
        dump = subprocess.run(
            ["pg_dump", "-h", "127.0.0.1", "-U", "postgres", "--inserts", "--no-owner", "--no-privileges", name],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        # psql meta-commands (pg_dump's ``\restrict`` guard) are not SQL; the test runs the dump as SQL.
        dump = "".join(line for line in dump.splitlines(keepends=True) if not line.startswith("\\"))
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
    (HERE / "postgresql.sql").write_text(dump, encoding="utf-8")
    (HERE / "expected.json").write_text(
        json.dumps({"sqlite": expected, "postgresql": postgres_expected}, indent=1, sort_keys=True) + "\n",
        encoding="utf-8",
    )


if __name__ == "__main__":
    main(sys.argv[1])
