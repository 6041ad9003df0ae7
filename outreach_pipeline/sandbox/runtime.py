"""Start both sandbox APIs together: stores, seed data, fault injection, activity simulator.

This is what `outreach-pipeline sandbox up` runs and what the test suite's fixtures use. The default
ports are fixed so the pipeline finds the sandbox with no configuration.
"""

from __future__ import annotations

import logging
import random
import shutil
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from outreach_pipeline.sandbox import credentials
from outreach_pipeline.sandbox.faults import (
    ErrorBody,
    FaultInjector,
    FaultRule,
    SandboxMiddleware,
    html_error_body,
    json_error_body,
    parse_fault_spec,
)
from outreach_pipeline.sandbox.outreach import app as outreach_app
from outreach_pipeline.sandbox.outreach.seed import seed_outreach
from outreach_pipeline.sandbox.outreach.simulate import simulate_outreach_step
from outreach_pipeline.sandbox.outreach.store import OutreachStore
from outreach_pipeline.sandbox.outreach.webhooks import WebhookDispatcher
from outreach_pipeline.sandbox.server import LOOPBACK, ServedApp, serve_in_thread
from outreach_pipeline.sandbox.workbooks import app as workbooks_app
from outreach_pipeline.sandbox.workbooks.seed import seed_workbooks
from outreach_pipeline.sandbox.workbooks.simulate import simulate_workbooks_step
from outreach_pipeline.sandbox.workbooks.store import ReadQuery, WorkbooksStore

log = logging.getLogger(__name__)

#: What a taken port's error names (``PortInUse.service``).
OUTREACH_SERVICE = "the Outreach sandbox"
WORKBOOKS_SERVICE = "the Workbooks sandbox"

DEFAULT_OUTREACH_PORT = credentials.DEFAULT_OUTREACH_PORT
DEFAULT_WORKBOOKS_PORT = credentials.DEFAULT_WORKBOOKS_PORT
DEFAULT_DATA_DIR = Path(".sandbox")
OUTREACH_DB = "outreach.db"
WORKBOOKS_DB = "workbooks.db"
# The seeder writes these first, so a store that holds none of them was never seeded.
WORKBOOKS_SEEDED_CONTROLLERS = ("crm/organisations", "crm/people")


class SandboxConfig(BaseModel):
    """Everything `sandbox up` can be told. `data_dir=None` keeps both stores in memory (tests)."""

    model_config = ConfigDict(extra="forbid")

    host: str = LOOPBACK
    outreach_port: int = Field(default=DEFAULT_OUTREACH_PORT, ge=0, le=65535, description="0 = any free port")
    workbooks_port: int = Field(
        default=DEFAULT_WORKBOOKS_PORT, ge=0, le=65535, description="0 = any free port"
    )
    data_dir: Path | None = DEFAULT_DATA_DIR
    prospects: int = Field(default=200, ge=0, description="seed size when the store is empty")
    accounts: int | None = Field(default=None, ge=0)
    opportunities: int | None = Field(default=None, ge=0)
    tasks: int | None = Field(default=None, ge=0, description="default: prospects / 5")
    calls: int | None = Field(default=None, ge=0, description="default: prospects / 10")
    workbooks_people: int = Field(default=50, ge=0)
    seed: int = 42
    seed_days: int = Field(default=3, ge=1, description="spread of seeded updatedAt values")
    seed_now: datetime | None = Field(
        default=None, description="end of the seeded span (default: now); pins windows"
    )
    simulate: bool = False
    simulate_interval_seconds: float = Field(default=5.0, gt=0)
    simulate_creates: int = Field(default=2, ge=0)
    simulate_edits: int = Field(default=5, ge=0)
    faults: str = Field(default="", description="fault rules for both APIs, as `--faults` takes them")
    outreach_settings: dict[str, Any] = Field(default_factory=dict)
    workbooks_settings: dict[str, Any] = Field(default_factory=dict)


@dataclass
class RunningSandbox:
    """Both APIs served on loopback, with their stores and middlewares (tests reach stats and faults here)."""

    config: SandboxConfig
    outreach_store: OutreachStore
    workbooks_store: WorkbooksStore
    outreach: ServedApp
    workbooks: ServedApp
    outreach_middleware: SandboxMiddleware
    workbooks_middleware: SandboxMiddleware
    seeded: dict[str, dict[str, int]] = field(default_factory=dict)
    webhooks: WebhookDispatcher | None = None  # Outreach's webhook deliveries
    _stop_simulator: threading.Event = field(default_factory=threading.Event, repr=False)
    _simulator: threading.Thread | None = field(default=None, repr=False)

    @property
    def outreach_url(self) -> str:
        """Base URL of the Outreach sandbox (the API is under `/api/v2`)."""
        return self.outreach.url

    @property
    def workbooks_url(self) -> str:
        """Base URL of the Workbooks sandbox (`/login.api`, `/<controller>.api`)."""
        return self.workbooks.url

    def credentials(self) -> dict[str, Any]:
        """The sandbox-only credentials and URLs, as `sandbox up` prints them.

        Returns:
            `outreach`, `workbooks` and `admin` sections plus the `seeded` row counts (empty when the
            stores already held data).
        """
        return {
            "outreach": {
                "url": self.outreach_url,
                "client_id": credentials.SANDBOX_CLIENT_ID,
                "client_secret": credentials.SANDBOX_CLIENT_SECRET,
                "refresh_token": credentials.SANDBOX_REFRESH_TOKEN,
            },
            "workbooks": {
                "url": self.workbooks_url,
                "api_key": credentials.SANDBOX_API_KEY,
                "username": credentials.SANDBOX_USERNAME,
                "password": credentials.SANDBOX_PASSWORD,
            },
            "admin": {
                "outreach": f"{self.outreach_url}/_sandbox/stats",
                "workbooks": f"{self.workbooks_url}/_sandbox/stats",
            },
            "seeded": self.seeded,
        }

    def start_simulator(self) -> None:
        """Create and edit records in both stores every `simulate_interval_seconds`, in a daemon thread."""
        if self._simulator is not None:
            return
        rng = random.Random(self.config.seed + 1)
        self._simulator = threading.Thread(
            target=self._simulate_until_stopped, args=(rng,), name="sandbox-simulator", daemon=True
        )
        self._simulator.start()

    def _simulate_until_stopped(self, rng: random.Random) -> None:
        config = self.config
        while not self._stop_simulator.wait(config.simulate_interval_seconds):
            try:
                simulate_outreach_step(
                    self.outreach_store, rng, creates=config.simulate_creates, edits=config.simulate_edits
                )
                simulate_workbooks_step(
                    self.workbooks_store, rng, creates=config.simulate_creates, edits=config.simulate_edits
                )
            except Exception:  # the simulator must never take the sandbox down
                log.exception("activity simulator step failed")

    def stop(self) -> None:
        """Stop the simulator and both servers, then close the stores' connections."""
        self._stop_simulator.set()
        if self._simulator is not None:
            self._simulator.join(10)
        if self.webhooks is not None:
            self.webhooks.stop()
        self.outreach.stop()
        self.workbooks.stop()
        _close_stores(self.outreach_store, self.workbooks_store)

    def __enter__(self) -> RunningSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _store_url(data_dir: Path | None, name: str) -> str:
    if data_dir is None:
        return "sqlite://"
    data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(data_dir / name).resolve()}"


def _close_stores(outreach_store: OutreachStore, workbooks_store: WorkbooksStore) -> None:
    outreach_store.engine.dispose()
    workbooks_store.dispose()


def workbooks_store_is_empty(store: WorkbooksStore) -> bool:
    """Whether the Workbooks store holds no people and no organisations (i.e. was never seeded)."""
    probe = ReadQuery(start=0, limit=1, skip_total=True)
    return all(not store.read(controller, probe).data for controller in WORKBOOKS_SEEDED_CONTROLLERS)


def _seed_empty_stores(
    config: SandboxConfig, outreach_store: OutreachStore, workbooks_store: WorkbooksStore
) -> dict[str, dict[str, int]]:
    """Seed each store that is empty; a data dir that already holds data is served as it is."""
    seeded: dict[str, dict[str, int]] = {}
    if not any(outreach_store.count_all().values()):
        seeded["outreach"] = seed_outreach(
            outreach_store,
            prospects=config.prospects,
            accounts=config.accounts,
            opportunities=config.opportunities,
            tasks=config.tasks,
            calls=config.calls,
            seed=config.seed,
            days=config.seed_days,
            now=config.seed_now,
        )
        log.info("seeded the Outreach sandbox: %s", seeded["outreach"])
    if workbooks_store_is_empty(workbooks_store):
        seeded["workbooks"] = seed_workbooks(
            workbooks_store, people=config.workbooks_people, seed=config.seed, now=config.seed_now
        )
        log.info("seeded the Workbooks sandbox: %s", seeded["workbooks"])
    return seeded


def _wrap(app: Any, rules: list[FaultRule], seed: int, error_body: ErrorBody) -> SandboxMiddleware:
    # Each API gets its own copies: a `count=N` burst means N faults from each API, not N shared.
    injector = FaultInjector([rule.model_copy() for rule in rules], seed=seed)
    return SandboxMiddleware(app, injector=injector, error_body=error_body)


def start_sandbox(config: SandboxConfig | None = None) -> RunningSandbox:
    """Open (or create and seed) both stores and serve both APIs on loopback.

    Args:
        config: what to serve where; the defaults serve `.sandbox/` on the default ports of `sandbox.credentials`.

    Returns:
        The running sandbox; stop it with `stop()` or use it as a context manager.

    Raises:
        FaultSpecError: `config.faults` is not a valid fault spec (checked before anything starts).
        RuntimeError: a port could not be bound.
    """
    config = config or SandboxConfig()
    rules = parse_fault_spec(config.faults)
    outreach_settings = outreach_app.OutreachSettings(**config.outreach_settings)
    workbooks_settings = workbooks_app.WorkbooksSettings(**config.workbooks_settings)
    outreach_store = OutreachStore(_store_url(config.data_dir, OUTREACH_DB))
    workbooks_store = WorkbooksStore(_store_url(config.data_dir, WORKBOOKS_DB))
    servers: list[ServedApp] = []
    try:
        seeded = _seed_empty_stores(config, outreach_store, workbooks_store)
        served_outreach = outreach_app.create_outreach_app(outreach_store, outreach_settings)
        outreach_mw = _wrap(served_outreach, rules, config.seed, json_error_body)
        # Deliveries read the settings the admin API may change; counted in the Outreach API's stats.
        webhooks = WebhookDispatcher(outreach_store, lambda: served_outreach.state.sandbox.settings)
        webhooks.stats = outreach_mw.stats
        workbooks_mw = _wrap(
            workbooks_app.create_workbooks_app(workbooks_store, workbooks_settings),
            rules,
            config.seed,
            html_error_body,
        )
        servers.append(serve_in_thread(outreach_mw, host=config.host, port=config.outreach_port,
                                       service=OUTREACH_SERVICE))
        servers.append(serve_in_thread(workbooks_mw, host=config.host, port=config.workbooks_port,
                                       service=WORKBOOKS_SERVICE))
    except BaseException:
        for server in servers:
            server.stop()
        _close_stores(outreach_store, workbooks_store)
        raise
    sandbox = RunningSandbox(
        config=config,
        outreach_store=outreach_store,
        workbooks_store=workbooks_store,
        outreach=servers[0],
        workbooks=servers[1],
        outreach_middleware=outreach_mw,
        workbooks_middleware=workbooks_mw,
        seeded=seeded,
        webhooks=webhooks,
    )
    webhooks.base_url = sandbox.outreach_url
    if config.simulate:
        sandbox.start_simulator()
    return sandbox


def reset_sandbox(data_dir: Path = DEFAULT_DATA_DIR) -> bool:
    """Delete the sandbox's stores; the next `sandbox up` seeds afresh.

    Args:
        data_dir: the directory `sandbox up` was given.

    Returns:
        Whether there was anything to delete.
    """
    if not data_dir.exists():
        return False
    shutil.rmtree(data_dir)
    return True
