"""Custom-field definitions the sandbox org has configured, served by `GET /api/v2/types`.

The format follows the spec's `info.description` ("Custom field types"). The seeder fills these fields
with values of the declared type.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

ValidationType = Literal[
    "boolean",
    "currency",
    "date",
    "date_time",
    "inclusion",
    "multi_inclusion",
    "numerical",
    "percentage",
    "phone_number",
    "string",
    "url",
]


class CustomFieldDefinition(BaseModel):
    """One `customN` field: its validation type, whether it is required, label and definition."""

    type: ValidationType
    required: bool = False
    label: str
    definition: list[str] | str | None = None


CUSTOM_FIELDS: dict[str, dict[str, CustomFieldDefinition]] = {
    "prospect": {
        "custom1": CustomFieldDefinition(type="string", label="Lead Source Detail"),
        "custom2": CustomFieldDefinition(
            type="inclusion",
            label="Buying Role",
            definition=["Decision Maker", "Influencer", "User", "Champion"],
        ),
        "custom3": CustomFieldDefinition(type="date", label="Last Event Attended"),
        "custom4": CustomFieldDefinition(type="url", label="Calendly Link"),
    },
    "account": {
        "custom1": CustomFieldDefinition(type="string", label="Workbooks Organisation Id"),
        "custom2": CustomFieldDefinition(type="currency", label="Annual Contract Value", definition="GBP"),
        "custom3": CustomFieldDefinition(
            type="multi_inclusion", label="Products of Interest", definition=["CRM", "Marketing", "Finance"]
        ),
    },
    "opportunity": {
        "custom1": CustomFieldDefinition(type="percentage", label="Discount"),
        "custom2": CustomFieldDefinition(type="boolean", label="Partner Deal"),
        "custom3": CustomFieldDefinition(type="date_time", label="Demo Booked At"),
    },
}


def types_document() -> dict[str, Any]:
    """The `GET /api/v2/types` response body."""
    return {
        "data": [
            {
                "type": resource_type,
                "meta": {"validations": {name: field.model_dump() for name, field in fields.items()}},
            }
            for resource_type, fields in CUSTOM_FIELDS.items()
        ]
    }
