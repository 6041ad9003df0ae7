"""Install step: create the Workbooks custom record types and custom fields a mapping set relies on.

Idempotent: what already exists with the expected API name and data type is reported as "already present";
nothing existing is ever changed. A field that exists with another data type is a conflict a person must
resolve, because converting a column in a live CRM can destroy data. Workbooks chooses API names itself
(``cf_<record type>_<title in snake_case>``, with a numeric suffix on a clash), so every name it returns is
checked against the one the mapping expects.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from outreach_pipeline.clients.http import ApiError
from outreach_pipeline.clients.workbooks import WorkbooksClient
from outreach_pipeline.mapping.models import CustomFieldSpec, MappingSet

CUSTOM_RECORD_TYPE_PREFIX = "Private::CustomRecord::"
CUSTOM_RECORD_CONTROLLER_PREFIX = "custom_record/"
CUSTOM_RECORD_TYPES_CONTROLLER = "admin/custom_record_types"

# Spellings Workbooks (or an admin) may have stored for the data types the mapping names.
_DATA_TYPE_ALIASES = {"checkbox": "boolean", "date_time": "datetime", "number": "decimal"}


class InstallStatus(StrEnum):
    """Outcome of one install item."""

    CREATED = "created"
    PRESENT = "present"
    CONFLICT = "conflict"
    ERROR = "error"

    @property
    def label(self) -> str:
        """How reports show the status ("already present" reads better than "present")."""
        return "already present" if self is InstallStatus.PRESENT else self.value


class InstallItem(BaseModel):
    """One custom record type or custom field and what the install step did about it.

    Attributes:
        record_type: Workbooks class name the item belongs to (``Private::Crm::Person``).
        kind: ``custom record type`` or ``custom field``.
        name: API name the mapping expects (the field's ``value_column_name``, or the record type's class).
        status: created, already present, conflict (exists but differs; left alone) or error.
        detail: Why an item conflicts or failed, naming what Workbooks has and what the mapping expects.
    """

    model_config = ConfigDict(frozen=True)

    record_type: str
    kind: Literal["custom record type", "custom field"]
    name: str
    status: InstallStatus
    detail: str = ""


class InstallReport(BaseModel):
    """Everything the install step created, found present, or could not reconcile."""

    items: list[InstallItem] = Field(default_factory=list)

    def with_status(self, status: InstallStatus) -> list[InstallItem]:
        """The items with ``status``, in install order."""
        return [item for item in self.items if item.status is status]

    @property
    def created(self) -> list[InstallItem]:
        """Items the run created."""
        return self.with_status(InstallStatus.CREATED)

    @property
    def present(self) -> list[InstallItem]:
        """Items that already existed as the mapping expects."""
        return self.with_status(InstallStatus.PRESENT)

    @property
    def conflicts(self) -> list[InstallItem]:
        """Items that need a person: existing with another type or name, or rejected by Workbooks."""
        return [item for item in self.items if item.status in {InstallStatus.CONFLICT, InstallStatus.ERROR}]

    @property
    def ok(self) -> bool:
        """True when everything the mapping needs exists as it expects."""
        return not self.conflicts


class CustomRecordTypePlan(BaseModel):
    """A custom record type the mapping needs, with the names used to create it.

    Attributes:
        resource_type: Class name the mapping expects (``Private::CustomRecord::OutreachSequence``).
        controller_path: Controller the mapping reads and writes (``custom_record/outreach_sequences``), or
            None when no entity mapping uses the type.
        name: Singular display name (``Outreach Sequence``); Workbooks derives the class name from it.
        name_plural: Plural display name (``Outreach Sequences``); Workbooks derives the controller from it.
    """

    model_config = ConfigDict(frozen=True)

    resource_type: str
    controller_path: str | None
    name: str
    name_plural: str


def install(client: WorkbooksClient, mapping_set: MappingSet) -> InstallReport:
    """Create the custom record types and custom fields ``mapping_set`` relies on, idempotently.

    Args:
        client: Workbooks client with admin rights.
        mapping_set: Mappings whose ``custom_fields`` (per Workbooks record type) and custom record
            types (``Private::CustomRecord::*`` record types) must exist.

    Returns:
        One item per record type and field: created, already present, conflict or error. Nothing that
        exists is modified.

    Raises:
        ApiError: Workbooks could not be read (authentication, network, server errors).
    """
    items: list[InstallItem] = []
    unavailable: set[str] = set()
    existing_types = list(client.iter_records(CUSTOM_RECORD_TYPES_CONTROLLER))
    for plan in plan_custom_record_types(mapping_set):
        item = _install_record_type(client, plan, existing_types)
        items.append(item)
        if item.status not in {InstallStatus.CREATED, InstallStatus.PRESENT}:
            unavailable.add(plan.resource_type)
    for record_type, specs in mapping_set.custom_fields.items():
        if record_type in unavailable:
            items.extend(_unavailable_field(record_type, spec) for spec in specs)
            continue
        existing_fields = client.list_custom_fields(record_type)
        items.extend(_install_field(client, record_type, spec, existing_fields) for spec in specs)
    return InstallReport(items=items)


# --------------------------------------------------------------------------- custom record types


def plan_custom_record_types(mapping_set: MappingSet) -> list[CustomRecordTypePlan]:
    """The custom record types used by the mapping's entities or custom fields, in first-use order.

    Display names come from the names the mapping expects, so that Workbooks derives those names back:
    ``Private::CustomRecord::OutreachSequence`` is named "Outreach Sequence", and the controller
    ``custom_record/outreach_sequences`` gives the plural "Outreach Sequences".
    """
    controllers: dict[str, str | None] = {}
    for entity in mapping_set.entities.values():
        if entity.workbooks_record_type.startswith(CUSTOM_RECORD_TYPE_PREFIX):
            controllers.setdefault(entity.workbooks_record_type, entity.workbooks_controller)
    for record_type in mapping_set.custom_fields:
        if record_type.startswith(CUSTOM_RECORD_TYPE_PREFIX):
            controllers.setdefault(record_type, None)
    return [_record_type_plan(record_type, controller) for record_type, controller in controllers.items()]


def _record_type_plan(resource_type: str, controller_path: str | None) -> CustomRecordTypePlan:
    class_part = resource_type.removeprefix(CUSTOM_RECORD_TYPE_PREFIX)
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", class_part)
    if controller_path and controller_path.startswith(CUSTOM_RECORD_CONTROLLER_PREFIX):
        route = controller_path.removeprefix(CUSTOM_RECORD_CONTROLLER_PREFIX)
        name_plural = " ".join(word.capitalize() for word in route.split("_") if word)
    else:
        name_plural = f"{name}s"
    return CustomRecordTypePlan(
        resource_type=resource_type, controller_path=controller_path, name=name, name_plural=name_plural
    )


def _install_record_type(
    client: WorkbooksClient, plan: CustomRecordTypePlan, existing: list[dict[str, Any]]
) -> InstallItem:
    def item(status: InstallStatus, detail: str = "") -> InstallItem:
        return InstallItem(
            record_type=plan.resource_type, kind="custom record type", name=plan.resource_type,
            status=status, detail=detail,
        )

    same_class = next((row for row in existing if row.get("resource_type") == plan.resource_type), None)
    if same_class is not None:
        mismatch = _controller_mismatch(plan, same_class)
        return item(InstallStatus.CONFLICT, mismatch) if mismatch else item(InstallStatus.PRESENT)
    same_name = next((row for row in existing if str(row.get("name", "")).casefold() == plan.name.casefold()), None)
    if same_name is not None:
        return item(
            InstallStatus.CONFLICT,
            f"a custom record type named {plan.name!r} exists as {same_name.get('resource_type')}, "
            f"but the mapping expects {plan.resource_type}",
        )
    try:
        outcome = client.create_custom_record_type(plan.name, name_plural=plan.name_plural)
    except ApiError as exc:
        return item(InstallStatus.ERROR, f"Workbooks rejected custom record type {plan.name!r}: {exc}")
    created_class = outcome.record.get("resource_type")
    if created_class != plan.resource_type:
        return item(
            InstallStatus.ERROR,
            f"Workbooks created custom record type {plan.name!r} as {created_class}, "
            f"but the mapping expects {plan.resource_type}",
        )
    mismatch = _controller_mismatch(plan, outcome.record)
    return item(InstallStatus.ERROR, mismatch) if mismatch else item(InstallStatus.CREATED)


def _controller_mismatch(plan: CustomRecordTypePlan, row: Mapping[str, Any]) -> str:
    """A message when Workbooks serves the type at another controller than the mapping uses, else ''."""
    actual = row.get("controller_path")
    if plan.controller_path is None or actual is None or actual == plan.controller_path:
        return ""
    return (
        f"custom record type {plan.resource_type} is served at {actual}, "
        f"but the mapping expects {plan.controller_path}"
    )


# --------------------------------------------------------------------------- custom fields


def _field_item(record_type: str, spec: CustomFieldSpec, status: InstallStatus, detail: str = "") -> InstallItem:
    return InstallItem(record_type=record_type, kind="custom field", name=spec.api_name, status=status, detail=detail)


def _unavailable_field(record_type: str, spec: CustomFieldSpec) -> InstallItem:
    return _field_item(
        record_type, spec, InstallStatus.ERROR,
        f"not created: custom record type {record_type} is not available (see its own line)",
    )


def _install_field(
    client: WorkbooksClient, record_type: str, spec: CustomFieldSpec, existing: list[dict[str, Any]]
) -> InstallItem:
    by_api_name = next((row for row in existing if row.get("value_column_name") == spec.api_name), None)
    if by_api_name is not None:
        difference = _field_difference(spec, by_api_name)
        if difference:
            return _field_item(record_type, spec, InstallStatus.CONFLICT, difference)
        return _field_item(record_type, spec, InstallStatus.PRESENT)
    by_title = next(
        (row for row in existing if str(row.get("title", "")).casefold() == spec.title.casefold()), None
    )
    if by_title is not None:
        # Creating it again would only add another suffixed column; the mapping must name the existing one.
        return _field_item(
            record_type, spec, InstallStatus.CONFLICT,
            f"a field titled {spec.title!r} exists as {by_title.get('value_column_name')}, "
            f"but the mapping expects {spec.api_name}",
        )
    return _create_field(client, record_type, spec)


def _create_field(client: WorkbooksClient, record_type: str, spec: CustomFieldSpec) -> InstallItem:
    extra = {"picklist_values": list(spec.picklist_options)} if spec.picklist_options else {}
    try:
        outcome = client.create_custom_field(record_type, spec.title, spec.data_type, **extra)
    except ApiError as exc:
        return _field_item(
            record_type, spec, InstallStatus.ERROR, f"Workbooks rejected field {spec.title!r}: {exc}"
        )
    returned = outcome.record.get("value_column_name")
    if returned != spec.api_name:
        return _field_item(
            record_type, spec, InstallStatus.ERROR,
            f"Workbooks named the new field {spec.title!r} {returned}, but the mapping expects {spec.api_name}",
        )
    return _field_item(record_type, spec, InstallStatus.CREATED)


def _field_difference(spec: CustomFieldSpec, row: Mapping[str, Any]) -> str:
    """Why an existing field does not serve the mapping ('' when it does)."""
    actual = normalise_data_type(row.get("data_type"))
    if actual != spec.data_type:
        return (
            f"exists with data type {actual or '(none)'!r}, but the mapping expects {spec.data_type!r} "
            "(left unchanged)"
        )
    missing = [option for option in spec.picklist_options if option not in _picklist_values(row)]
    if missing:
        return f"picklist lacks option(s) {missing} the mapping writes (left unchanged)"
    return ""


def normalise_data_type(data_type: object) -> str:
    """A stored custom-field data type in the mapping's vocabulary (``checkbox`` -> ``boolean``)."""
    text = str(data_type or "").strip().lower()
    return _DATA_TYPE_ALIASES.get(text, text)


def _picklist_values(row: Mapping[str, Any]) -> set[str]:
    raw = row.get("picklist_values")
    if isinstance(raw, Iterable) and not isinstance(raw, str):
        return {str(value) for value in raw}
    return {value.strip() for value in str(raw or "").strip("[]").split(",") if value.strip()}


def format_install_report(report: InstallReport) -> str:
    """The report as an aligned text table (record type, kind, API name, status, detail) plus a summary."""
    header = ("RECORD TYPE", "KIND", "API NAME", "STATUS", "DETAIL")
    rows = [(item.record_type, item.kind, item.name, item.status.label, item.detail) for item in report.items]
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header) - 1)]
    lines = [
        "  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[-1]]).rstrip()
        for row in [header, *rows]
    ]
    lines.append(
        f"{len(report.created)} created, {len(report.present)} already present, "
        f"{len(report.conflicts)} conflict(s)"
    )
    return "\n".join(lines)
