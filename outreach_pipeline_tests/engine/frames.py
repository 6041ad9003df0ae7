"""Extracted-frame builders shared by the engine tests: minimal valid prospects that rows override."""

from typing import Any

import pandas as pd

from outreach_pipeline.mapping.models import EntityMapping

T0 = pd.Timestamp("2024-03-01T10:00:00Z")

#: Prospect attributes the default mapping reads, blank unless a row sets them.
PROSPECT_ATTRIBUTES = (
    "middleName", "title", "addressStreet", "addressCity", "addressState", "addressZip", "addressCountry",
    "linkedInUrl", "twitterUrl", "facebookUrl", "websiteUrl1", "emailOptedOut", "externalId",
    "workPhones", "mobilePhones",
)


def extracted_prospects(*rows: dict[str, Any], updated_at: Any = T0) -> pd.DataFrame:
    """An extracted prospect frame (docs/ARCHITECTURE.md): one valid prospect per row, overridden by the row."""
    records = [
        {"id": row["id"], "createdAt": updated_at, "updatedAt": updated_at, "firstName": "Ann", "lastName": "Lee",
         "emails": [f"p{row['id']}@example.com"], "accountId": None, **row}
        for row in rows
    ]
    frame = pd.DataFrame(records)
    for column in PROSPECT_ATTRIBUTES:
        if column not in frame:
            frame[column] = None
    frame["accountId"] = frame["accountId"].astype("Int64")
    return frame


def with_email_required(entity: EntityMapping) -> EntityMapping:
    """The prospects mapping with its email made required, as a user's mapping may make it (the default
    leaves it optional: a person without an email syncs, the email is a match key when present)."""
    fields = [f.model_copy(update={"required": True}) if f.workbooks == "main_location[email]" else f
              for f in entity.fields]
    return entity.model_copy(update={"fields": fields})
