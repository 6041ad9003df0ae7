"""Run-time settings of the Outreach sandbox and its documented, sandbox-only default credentials."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

# Sandbox-only credentials, published on purpose so the pipeline finds a local sandbox with no
# configuration; spelled once, in sandbox.credentials.
from outreach_pipeline.sandbox.credentials import (
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    SANDBOX_REDIRECT_URI,
)

DEFAULT_USER_ID = 1

ACCESS_TOKEN_TTL_SECONDS = 7200
REFRESH_TOKEN_TTL_SECONDS = 14 * 24 * 3600
REFRESH_TOKEN_HISTORY = 100
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


class OutreachSettings(BaseModel):
    """Behaviour switches of the sandbox; changeable at run time via `POST /_sandbox/outreach/settings`."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    client_id: str = SANDBOX_CLIENT_ID
    client_secret: SecretStr = SecretStr(SANDBOX_CLIENT_SECRET)
    redirect_uri: str = SANDBOX_REDIRECT_URI
    access_token_ttl_seconds: int = Field(default=ACCESS_TOKEN_TTL_SECONDS, ge=1)
    refresh_token_ttl_seconds: int = Field(default=REFRESH_TOKEN_TTL_SECONDS, ge=1)
    refresh_token_history: int = Field(default=REFRESH_TOKEN_HISTORY, ge=0)
    strict_refresh_rotation: bool = False
    # What the user answers on the consent page (the sandbox has no page: it answers for them).
    consent: Literal["approve", "deny"] = "approve"
    rate_limit_per_hour: int = Field(default=10_000, ge=1)
    rate_limit_remaining_two_values: bool = False
    max_page_size: int = Field(default=MAX_PAGE_SIZE, ge=1)
    public_base_url: str | None = None
    # Webhook deliveries (sandbox/outreach/webhooks.py): tries per delivery, the wait between them, and a
    # switch that drops every delivery (an Outreach that never delivers), so tests can prove lost ones are caught.
    webhook_delivery_attempts: int = Field(default=3, ge=1)
    webhook_retry_delay_seconds: float = Field(default=2.0, ge=0)
    webhook_deliveries_dropped: bool = False

    def with_changes(self, changes: dict[str, Any]) -> OutreachSettings:
        """A validated copy with `changes` applied (unknown keys are rejected)."""
        merged = {name: getattr(self, name) for name in type(self).model_fields} | changes
        return OutreachSettings.model_validate(merged)
