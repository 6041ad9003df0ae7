"""Outreach's webhook API (`/api/v2/webhooks`, scope `webhooks.all`): the receiver's subscription, as typed records.

A subscription is identified by its url: registering is idempotent, reusing (and re-keying, re-activating) a
webhook already pointing at the same url instead of adding a second one that would deliver everything twice.
Outreach never shows a webhook's `secret` back, so a reused webhook is always given the receiver's secret.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import SecretStr

from outreach_pipeline.clients.http import NotFoundError
from outreach_pipeline.clients.outreach import API_PREFIX, OutreachClient
from outreach_pipeline.clients.outreach_records import OutreachRecord

WEBHOOKS = "webhooks"
EVERYTHING = "*"


@dataclass(frozen=True)
class WebhookSubscription:
    """One Outreach webhook: where it delivers, what it matches, whether it is on."""

    id: int
    url: str
    resource: str
    action: str
    active: bool

    @classmethod
    def of(cls, record: OutreachRecord) -> WebhookSubscription:
        attributes = record.attributes
        return cls(id=record.id, url=str(attributes.get("url") or ""), resource=str(attributes.get("resource") or ""),
                   action=str(attributes.get("action") or ""), active=bool(attributes.get("active")))


def list_webhooks(client: OutreachClient) -> list[WebhookSubscription]:
    """Every webhook of the org (there are few: one page or two)."""
    return [WebhookSubscription.of(record)
            for record in client.iter_records(f"{API_PREFIX}/{WEBHOOKS}", {"count": "false"})]


def get_webhook(client: OutreachClient, webhook_id: int) -> WebhookSubscription | None:
    """One webhook, or None when it was deleted."""
    try:
        return WebhookSubscription.of(client.get(WEBHOOKS, webhook_id))
    except NotFoundError:
        return None


def ensure_webhook(client: OutreachClient, url: str, secret: SecretStr, *, resource: str = EVERYTHING,
                   action: str = EVERYTHING) -> WebhookSubscription:
    """The active webhook delivering `resource`/`action` changes to `url`, signed with `secret`: the existing one
    with that url, updated, or a new one."""
    attributes = {"url": url, "secret": secret.get_secret_value(), "resource": resource, "action": action,
                  "active": True}
    existing = [hook for hook in list_webhooks(client) if hook.url == url]
    if existing:
        return WebhookSubscription.of(client.update(WEBHOOKS, existing[0].id, attributes))
    return WebhookSubscription.of(client.create(WEBHOOKS, attributes))


def delete_webhook(client: OutreachClient, webhook_id: int) -> None:
    """Remove a webhook (a receiver taken out of service for good)."""
    client.delete(WEBHOOKS, webhook_id)
