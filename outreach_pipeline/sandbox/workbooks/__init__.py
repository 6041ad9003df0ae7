"""Workbooks CRM API sandbox: a local emulator of the Workbooks wire format backed by SQLite."""

from outreach_pipeline.sandbox.workbooks.app import (
    SANDBOX_API_KEY,
    SANDBOX_PASSWORD,
    SANDBOX_USERNAME,
    SESSION_COOKIE,
    WorkbooksSettings,
    create_workbooks_app,
)
from outreach_pipeline.sandbox.workbooks.seed import seed_workbooks, shared_email
from outreach_pipeline.sandbox.workbooks.simulate import simulate_workbooks_step
from outreach_pipeline.sandbox.workbooks.store import BatchObject, ReadQuery, WorkbooksStore

__all__ = [
    "SANDBOX_API_KEY",
    "SANDBOX_PASSWORD",
    "SANDBOX_USERNAME",
    "SESSION_COOKIE",
    "BatchObject",
    "ReadQuery",
    "WorkbooksSettings",
    "WorkbooksStore",
    "create_workbooks_app",
    "seed_workbooks",
    "shared_email",
    "simulate_workbooks_step",
]
