"""Fixtures: fresh Workbooks and Outreach sandboxes served over real HTTP, clients, and mapping variants."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from outreach_pipeline.clients.outreach import OutreachClient
from outreach_pipeline.clients.workbooks import WorkbooksClient
from outreach_pipeline.mapping.models import MappingSet, load_mapping_set
from outreach_pipeline.sandbox.credentials import SANDBOX_OUTREACH_AUTH, SANDBOX_WORKBOOKS_AUTH
from outreach_pipeline.sandbox.outreach.app import create_outreach_app
from outreach_pipeline.sandbox.outreach.settings import OutreachSettings
from outreach_pipeline.sandbox.outreach.store import OutreachStore
from outreach_pipeline.sandbox.server import serve_in_thread
from outreach_pipeline.sandbox.workbooks import WorkbooksSettings, WorkbooksStore, create_workbooks_app


@pytest.fixture
def workbooks_url() -> Iterator[str]:
    """A Workbooks sandbox with an empty in-memory database (no custom fields yet)."""
    store = WorkbooksStore("sqlite://")
    with serve_in_thread(create_workbooks_app(store, WorkbooksSettings())) as served:
        yield served.url
    store.dispose()


@pytest.fixture(scope="module")
def outreach_url() -> Iterator[str]:
    """An Outreach sandbox; the tests only read its `/types`, so one server serves a whole module."""
    with serve_in_thread(create_outreach_app(OutreachStore("sqlite://"), OutreachSettings())) as served:
        yield served.url


@pytest.fixture
def workbooks(workbooks_url: str) -> Iterator[WorkbooksClient]:
    client = WorkbooksClient(workbooks_url, **SANDBOX_WORKBOOKS_AUTH)
    yield client
    client.close()


@pytest.fixture
def outreach(outreach_url: str) -> Iterator[OutreachClient]:
    client = OutreachClient(outreach_url, **SANDBOX_OUTREACH_AUTH)
    yield client
    client.close()


@pytest.fixture
def default_mapping() -> MappingSet:
    return load_mapping_set()


@pytest.fixture
def mapping_variant(default_mapping: MappingSet) -> Callable[[Callable[[dict[str, Any]], None]], MappingSet]:
    """Build a validated MappingSet from the default one after `edit` changes its plain-dict form."""

    def build(edit: Callable[[dict[str, Any]], None]) -> MappingSet:
        raw = default_mapping.model_dump(mode="json")
        edit(raw)
        return MappingSet.model_validate(raw)

    return build


def field_entry(raw: dict[str, Any], entity: str, workbooks_field: str) -> dict[str, Any]:
    """The plain-dict field mapping of `entity` that writes `workbooks_field`."""
    return next(field for field in raw["entities"][entity]["fields"] if field["workbooks"] == workbooks_field)


def custom_field_entry(raw: dict[str, Any], record_type: str, api_name: str) -> dict[str, Any]:
    """The plain-dict custom field spec `api_name` of `record_type`."""
    return next(spec for spec in raw["custom_fields"][record_type] if spec["api_name"] == api_name)
