"""Record types and field definitions of the Workbooks sandbox.

Field names follow `workbooks_api.md` section 2. Names the research could not confirm (opportunity
`amount`, `predicted_close_date`, `opportunity_stage`, `organisation_id`) follow `default_mappings.md`;
`metadata/types` publishes them so a client's preflight check sees exactly what this sandbox accepts.

Length limits (the real limits are not documented; these are the sandbox's choices):
`string`/`picklist` 255 characters, `email` sub-keys 255, `array` 4096, `text` 65535.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import StrEnum
from functools import cached_property

from pydantic import BaseModel, ConfigDict

STRING_MAX_LENGTH = 255
ARRAY_MAX_LENGTH = 4096
TEXT_MAX_LENGTH = 65535

LOCATION_SUB_KEYS = (
    "email",
    "telephone",
    "mobile",
    "fax",
    "street_address",
    "town",
    "county_province_state",
    "postcode",
    "country",
    "alternate_email",
    "alternate_telephone",
    "email_address_undeliverable",
)


class DataType(StrEnum):
    """Workbooks datatypes the sandbox stores and validates."""

    STRING = "string"
    TEXT = "text"
    INTEGER = "integer"
    DECIMAL = "decimal"
    BOOLEAN = "boolean"
    DATE = "date"
    DATETIME = "datetime"
    CURRENCY = "currency"
    ARRAY = "array"
    PICKLIST = "picklist"
    FOREIGN_KEY = "foreign_key"


class FieldSpec(BaseModel):
    """One API attribute of a record type, stored in a column of the same (literal) name."""

    model_config = ConfigDict(frozen=True)

    name: str
    datatype: DataType
    title: str
    required: bool = False
    is_createable: bool = True
    is_updateable: bool = True
    is_filterable: bool = True
    is_nullable: bool = True
    default_value: str | int | bool | None = None
    picklist: tuple[str, ...] | None = None
    linked_item: str | None = None
    indexed: bool = False
    custom: bool = False

    @property
    def max_length(self) -> int | None:
        if self.datatype in (DataType.STRING, DataType.PICKLIST):
            return STRING_MAX_LENGTH
        if self.datatype is DataType.ARRAY:
            return ARRAY_MAX_LENGTH
        if self.datatype is DataType.TEXT:
            return TEXT_MAX_LENGTH
        return None


class RecordKind(StrEnum):
    """How the store treats writes to a record type."""

    STANDARD = "standard"
    READ_ONLY_VIEW = "read_only_view"
    CUSTOM_FIELD_ADMIN = "custom_field_admin"
    CUSTOM_RECORD_TYPE_ADMIN = "custom_record_type_admin"


class RecordTypeSpec(BaseModel):
    """A controller (e.g. `crm/people`) and the table and fields behind it."""

    model_config = ConfigDict(frozen=True)

    controller_path: str
    class_name: str
    human_class_name: str
    table_name: str
    fields: tuple[FieldSpec, ...]
    object_ref_prefix: str | None = None
    kind: RecordKind = RecordKind.STANDARD
    # Several types may share one table (tasks and meetings are both activities); the `type`
    # column then tells them apart and each type sees only its own rows.
    discriminator: str | None = None
    # A person needs a name or a last name: any one of these satisfies "required".
    required_one_of: tuple[str, ...] = ()

    def field(self, name: str) -> FieldSpec | None:
        return self.fields_by_name.get(name)

    @cached_property
    def fields_by_name(self) -> dict[str, FieldSpec]:
        return {field.name: field for field in self.fields}

    @property
    def type_slug(self) -> str:
        """`Private::Crm::SalesLead` -> `sales_lead`: the middle part of custom field names."""
        return camel_to_snake(self.class_name.rsplit("::", 1)[-1])


def camel_to_snake(text: str) -> str:
    """Convert `SalesLead` to `sales_lead`."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", text).lower()


def title_to_snake(title: str) -> str:
    """Convert a field title such as `Outreach Id` to `outreach_id` (non-alphanumerics become `_`)."""
    return re.sub(r"[^0-9a-z]+", "_", title.lower()).strip("_")


def title_to_camel(title: str) -> str:
    """Convert `Outreach Sequence` to `OutreachSequence`."""
    return "".join(part.capitalize() for part in re.split(r"[^0-9A-Za-z]+", title) if part)


def _field(name: str, datatype: DataType, title: str | None = None, **options: object) -> FieldSpec:
    return FieldSpec(
        name=name, datatype=datatype, title=title or name.replace("_", " ").capitalize(), **options
    )


def _strings(*names: str) -> list[FieldSpec]:
    return [_field(name, DataType.STRING) for name in names]


def _location_fields(prefix: str) -> list[FieldSpec]:
    fields = []
    for key in LOCATION_SUB_KEYS:
        datatype = DataType.BOOLEAN if key == "email_address_undeliverable" else DataType.STRING
        indexed = prefix == "main_location" and key == "email"
        fields.append(
            _field(f"{prefix}[{key}]", datatype, f"{prefix} {key}".replace("_", " "), indexed=indexed)
        )
    return fields


def common_fields() -> list[FieldSpec]:
    """Attributes every record carries (CL-README "Common Attributes")."""
    read_only = {"is_createable": False, "is_updateable": False}
    return [
        _field("id", DataType.INTEGER, "Id", is_nullable=False, **read_only),
        _field("lock_version", DataType.INTEGER, "Lock version", is_nullable=False, **read_only),
        _field("created_at", DataType.DATETIME, "Created at", indexed=True, **read_only),
        _field("updated_at", DataType.DATETIME, "Updated at", indexed=True, **read_only),
        _field("created_by", DataType.STRING, "Created by", **read_only),
        _field("updated_by", DataType.STRING, "Updated by", **read_only),
        _field("created_through", DataType.STRING, "Created through", **read_only),
        _field("created_through_reference", DataType.STRING, "Created through reference", indexed=True),
        _field(
            "is_deleted", DataType.BOOLEAN, "Is deleted", is_nullable=False, default_value=False, **read_only
        ),
        _field("object_ref", DataType.STRING, "Reference", indexed=True, **read_only),
        _field("owner_id", DataType.INTEGER, "Owner"),
        _field("assigned_to", DataType.INTEGER, "Assigned to"),
        _field("imported", DataType.BOOLEAN, "Imported", default_value=False),
    ]


def _name_field(*, required: bool, derived: bool = False) -> FieldSpec:
    if derived:
        return _field("name", DataType.STRING, "Name", indexed=True, is_createable=False, is_updateable=False)
    return _field("name", DataType.STRING, "Name", required=required, indexed=True)


SOLICITING_FIELDS = [
    _field("no_email_soliciting", DataType.BOOLEAN, "No email", default_value=False),
    _field("no_phone_soliciting", DataType.BOOLEAN, "No phone", default_value=False),
    _field("no_post_soliciting", DataType.BOOLEAN, "No post", default_value=False),
]


def _person() -> RecordTypeSpec:
    fields = [
        *common_fields(),
        _name_field(required=False),
        *_strings(
            "person_first_name",
            "person_middle_name",
            "person_last_name",
            "person_personal_title",
            "person_salutation",
            "person_suffix",
            "person_job_title",
            "person_job_role",
        ),
        _field("employer_link", DataType.FOREIGN_KEY, "Employer", linked_item="Private::Crm::Organisation"),
        *_location_fields("main_location"),
        *_location_fields("home_location"),
        *SOLICITING_FIELDS,
        *_strings("website", "skype_name", "twitter_url", "linkedin_url", "facebook_url", "photo_url"),
        _field("biography", DataType.TEXT, "Biography"),
    ]
    return RecordTypeSpec(
        controller_path="crm/people",
        class_name="Private::Crm::Person",
        human_class_name="Person",
        table_name="people",
        fields=tuple(fields),
        object_ref_prefix="PERS",
        required_one_of=("name", "person_last_name"),
    )


def _organisation() -> RecordTypeSpec:
    fields = [
        *common_fields(),
        _name_field(required=True),
        *_strings(
            "industry",
            "organisation_category",
            "organisation_company_number",
            "organisation_vat_number",
            "website",
            "logo_url",
            "currency",
        ),
        _field("organisation_annual_revenue", DataType.CURRENCY, "Annual revenue"),
        _field("organisation_num_employees", DataType.INTEGER, "Number of employees"),
        *_location_fields("main_location"),
        *SOLICITING_FIELDS[1:],
        _field("biography", DataType.TEXT, "Biography"),
    ]
    return RecordTypeSpec(
        controller_path="crm/organisations",
        class_name="Private::Crm::Organisation",
        human_class_name="Organisation",
        table_name="organisations",
        fields=tuple(fields),
        object_ref_prefix="ORG",
    )


def _opportunity() -> RecordTypeSpec:
    fields = [
        *common_fields(),
        _name_field(required=False, derived=True),
        _field("description", DataType.STRING, "Description", required=True),
        _field("document_date", DataType.DATE, "Document date"),
        *_strings("document_currency", "home_currency", "fao", "opportunity_stage"),
        _field("comment", DataType.TEXT, "Comment"),
        _field("probability", DataType.INTEGER, "Probability"),
        _field("amount", DataType.CURRENCY, "Amount"),
        _field("predicted_close_date", DataType.DATE, "Close date"),
        _field(
            "organisation_id", DataType.FOREIGN_KEY, "Organisation", linked_item="Private::Crm::Organisation"
        ),
        _field("opportunity_contact_ids", DataType.ARRAY, "Contact ids"),
        _field("opportunity_contact_roles", DataType.ARRAY, "Contact roles"),
    ]
    return RecordTypeSpec(
        controller_path="crm/opportunities",
        class_name="Private::Crm::Opportunity",
        human_class_name="Opportunity",
        table_name="opportunities",
        fields=tuple(fields),
        object_ref_prefix="OPP",
    )


ACTIVITY_STATUSES = ("New", "In progress", "Complete", "Cancelled")


def activity_fields() -> list[FieldSpec]:
    """Fields shared by tasks and meetings (one `activities` table holds both)."""
    return [
        *common_fields(),
        _field("type", DataType.STRING, "Type", is_createable=False, is_updateable=False),
        _name_field(required=True),
        _field("description", DataType.TEXT, "Description"),
        *_strings("activity_type", "activity_priority", "location", "primary_contact_type"),
        _field(
            "activity_status", DataType.PICKLIST, "Status", picklist=ACTIVITY_STATUSES, default_value="New"
        ),
        _field("due_date", DataType.DATE, "Due date"),
        _field("due", DataType.DATETIME, "Due"),
        _field("start", DataType.DATETIME, "Start"),
        _field("finish", DataType.DATETIME, "Finish"),
        _field("completed_date", DataType.DATE, "Completed date"),
        _field("all_day", DataType.BOOLEAN, "All day", default_value=False),
        _field("duration", DataType.INTEGER, "Duration (minutes)"),
        _field("reminder_enabled", DataType.BOOLEAN, "Reminder enabled", default_value=False),
        _field(
            "primary_contact_id", DataType.FOREIGN_KEY, "Primary contact", linked_item="Private::Crm::Person"
        ),
    ]


def _activity(
    controller: str, class_name: str, human: str, discriminator: str | None, kind: RecordKind
) -> RecordTypeSpec:
    return RecordTypeSpec(
        controller_path=controller,
        class_name=class_name,
        human_class_name=human,
        table_name="activities",
        fields=tuple(activity_fields()),
        object_ref_prefix="ACT",
        discriminator=discriminator,
        kind=kind,
    )


def _api_data() -> RecordTypeSpec:
    fields = [
        *common_fields(),
        _field("key", DataType.STRING, "Key", required=True, indexed=True),
        _field("value", DataType.TEXT, "Value"),
    ]
    return RecordTypeSpec(
        controller_path="automation/api_data",
        class_name="Private::Automation::ApiData",
        human_class_name="API Data",
        table_name="api_data",
        fields=tuple(fields),
    )


def _custom_fields_admin() -> RecordTypeSpec:
    fields = [
        *common_fields(),
        _field("title", DataType.STRING, "Title", required=True),
        _field("resource_type", DataType.STRING, "Resource type", required=True, is_updateable=False),
        _field("data_type", DataType.STRING, "Data type", required=True, is_updateable=False),
        _field("status", DataType.STRING, "Status", default_value="Available"),
        _field("picklist_values", DataType.ARRAY, "Picklist values"),
        _field("default_value", DataType.STRING, "Default value"),
        _field("is_indexed", DataType.BOOLEAN, "Indexed", default_value=False, is_updateable=False),
        _field("is_searchable", DataType.BOOLEAN, "Searchable", default_value=False),
        _field(
            "value_column_name",
            DataType.STRING,
            "Value column name",
            is_createable=False,
            is_updateable=False,
        ),
    ]
    return RecordTypeSpec(
        controller_path="admin/custom_fields",
        class_name="Private::Admin::CustomField",
        human_class_name="Custom Field",
        table_name="custom_fields",
        fields=tuple(fields),
        kind=RecordKind.CUSTOM_FIELD_ADMIN,
    )


def _custom_record_types_admin() -> RecordTypeSpec:
    fields = [
        *common_fields(),
        _field("name", DataType.STRING, "Name", required=True),
        _field("name_plural", DataType.STRING, "Plural name", required=True),
        _field("object_ref_prefix", DataType.STRING, "Reference prefix"),
        _field("route_suffix", DataType.STRING, "Route suffix", is_updateable=False),
        _field("description", DataType.TEXT, "Description"),
        _field("help_url", DataType.STRING, "Help URL"),
        _field("icon_class", DataType.STRING, "Icon"),
        _field("resource_type", DataType.STRING, "Resource type", is_createable=False, is_updateable=False),
        _field(
            "controller_path", DataType.STRING, "Controller path", is_createable=False, is_updateable=False
        ),
    ]
    return RecordTypeSpec(
        controller_path="admin/custom_record_types",
        class_name="Private::Admin::CustomRecordType",
        human_class_name="Custom Record Type",
        table_name="custom_record_types",
        fields=tuple(fields),
        kind=RecordKind.CUSTOM_RECORD_TYPE_ADMIN,
    )


def custom_record_fields() -> list[FieldSpec]:
    """Standard fields of a record of a custom record type (custom fields come on top)."""
    return [*common_fields(), _name_field(required=True), _field("description", DataType.TEXT, "Description")]


def standard_record_types() -> list[RecordTypeSpec]:
    """Every built-in record type, in `metadata/types` order."""
    return [
        _person(),
        _organisation(),
        _opportunity(),
        _activity(
            "activity/tasks",
            "Private::Activity::Task",
            "Task",
            "Private::Activity::Task",
            RecordKind.STANDARD,
        ),
        _activity(
            "activity/meetings",
            "Private::Activity::Meeting",
            "Meeting",
            "Private::Activity::Meeting",
            RecordKind.STANDARD,
        ),
        _activity(
            "activity/activities", "Private::Activity::Activity", "Activity", None, RecordKind.READ_ONLY_VIEW
        ),
        _api_data(),
        _custom_fields_admin(),
        _custom_record_types_admin(),
    ]


def with_extra_fields(spec: RecordTypeSpec, extra: Iterable[FieldSpec]) -> RecordTypeSpec:
    """Return `spec` with custom fields appended."""
    # A new model, not `model_copy`: a copy would carry the cached `fields_by_name` of the old fields.
    values = {name: getattr(spec, name) for name in RecordTypeSpec.model_fields}
    return RecordTypeSpec(**{**values, "fields": (*spec.fields, *extra)})
