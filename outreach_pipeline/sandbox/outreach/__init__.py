"""Outreach API v2 sandbox: a faithful local emulator driven by Outreach's own OpenAPI document."""

from outreach_pipeline.sandbox.credentials import (
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    SANDBOX_REDIRECT_URI,
    SANDBOX_REFRESH_TOKEN,
)
from outreach_pipeline.sandbox.outreach.app import OutreachSandbox, create_outreach_app
from outreach_pipeline.sandbox.outreach.seed import seed_outreach
from outreach_pipeline.sandbox.outreach.settings import DEFAULT_USER_ID, OutreachSettings
from outreach_pipeline.sandbox.outreach.simulate import SimulationResult, simulate_outreach_step
from outreach_pipeline.sandbox.outreach.store import OutreachRecord, OutreachStore

__all__ = [
    "DEFAULT_USER_ID",
    "SANDBOX_CLIENT_ID",
    "SANDBOX_CLIENT_SECRET",
    "SANDBOX_REDIRECT_URI",
    "SANDBOX_REFRESH_TOKEN",
    "OutreachRecord",
    "OutreachSandbox",
    "OutreachSettings",
    "OutreachStore",
    "SimulationResult",
    "create_outreach_app",
    "seed_outreach",
    "simulate_outreach_step",
]
