"""`outreach-pipeline webhooks serve`: the Outreach webhook receiver on its own (production), and the receiver
`dev` starts next to the sandbox. What it does is `webhook_receiver.py`'s; this module wires the settings,
the Outreach client (the runs' token store) and the ledger to it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import click

from outreach_pipeline.clients.http import ApiError
from outreach_pipeline.clients.outreach_webhooks import (
    delete_webhook,
    ensure_webhook,
    get_webhook,
    list_webhooks,
)
from outreach_pipeline.defs.resources import LedgerResource, OutreachResource
from outreach_pipeline.engine.ledger import SyncLedger
from outreach_pipeline.engine.webhook_hints import WebhookHints
from outreach_pipeline.settings import PipelineSettings
from outreach_pipeline.webhook_receiver import DELIVERY_PATH, WebhookReceiver

LOOPBACK_PREFIX = "http://127.0.0.1:"


@contextmanager
def running_receiver(settings: PipelineSettings, outreach: OutreachResource, ledger_url: str | None = None,
                     *, port: int | None = None, replace_local: bool = False) -> Iterator[WebhookReceiver]:
    """The receiver serving, subscribed and beating until the block ends.

    Args:
        settings: Host, port, public URL, secret and heartbeat of the receiver.
        outreach: Where its webhook is registered (the client is opened per call: a long-lived receiver
            must not hold one access token for days).
        ledger_url: The ledger the runs use (default: SQLite under DAGSTER_HOME).
        port: Overrides the setting.
        replace_local: Delete other receivers' loopback webhooks first (`dev`, whose receiver takes any free port
            on each start: the sandbox would otherwise keep retrying deliveries to ports nobody listens on).
    """
    def subscribe(url, secret):
        with outreach.open() as client:
            if replace_local:
                for hook in list_webhooks(client):
                    if hook.url != url and hook.url.startswith(LOOPBACK_PREFIX) and hook.url.endswith(DELIVERY_PATH):
                        delete_webhook(client, hook.id)
            return ensure_webhook(client, url, secret)

    def check(webhook_id):
        with outreach.open() as client:
            return get_webhook(client, webhook_id)

    with ExitStack() as stack:
        ledger: SyncLedger = stack.enter_context(LedgerResource(url=ledger_url).open())
        receiver = WebhookReceiver(
            WebhookHints(ledger.engine), subscribe=subscribe, check=check, secret=settings.webhook_secret,
            host=settings.webhook_receiver_host, port=settings.webhook_receiver_port if port is None else port,
            public_url=settings.webhook_public_url, heartbeat_seconds=settings.webhook_heartbeat_seconds,
        )
        yield stack.enter_context(receiver)


@contextmanager
def dev_receiver(settings: PipelineSettings, outreach_url: str, dagster_home: Path, env: dict[str, str], port: int):
    """`dev`'s receiver next to the sandbox, on the runs' ledger; yields its URL (None when the setting turns it off).

    Raises:
        click.ClickException: The port is taken.
    """
    from outreach_pipeline.defs.resources import LEDGER_URL_VARIABLE

    if not settings.webhook_receiver_in_dev:
        yield None
        return
    ledger_url = env.get(LEDGER_URL_VARIABLE) or f"sqlite:///{dagster_home / 'sync_ledger.db'}"
    outreach = OutreachResource(base_url=outreach_url,
                                token_store_path=str(dagster_home / "outreach_tokens" / "webhook_receiver.json"))
    stack = ExitStack()
    try:
        receiver = stack.enter_context(running_receiver(settings, outreach, ledger_url, port=port, replace_local=True))
    except OSError as exc:
        raise click.ClickException(f"the webhook receiver could not bind port {port}: {exc.strerror}; "
                                   "pass --webhook-port 0 (any free port)") from None
    with stack:
        yield receiver.public_url


@click.group()
def webhooks() -> None:
    """Outreach webhooks: change hints that let quiet hourly runs skip their Outreach reads."""


@webhooks.command("serve")
@click.option("--port", default=None, type=click.IntRange(0, 65535), help="Overrides OUTREACH_PIPELINE_WEBHOOK_RECEIVER_PORT.")
def serve(port: int | None) -> None:
    """Receive Outreach's webhook deliveries until Ctrl-C (register the subscription, record hints and liveness)."""
    from outreach_pipeline.defs.resources import ResourceConfigError, outreach_resource_from_env
    from outreach_pipeline.settings import SettingsError, load_settings

    try:
        settings = load_settings()
        outreach = outreach_resource_from_env(settings=settings)
    except (SettingsError, ResourceConfigError) as exc:
        raise click.ClickException(str(exc)) from exc
    ledger_url = settings.ledger_url.get_secret_value() if settings.ledger_url is not None else None
    try:
        with running_receiver(settings, outreach, ledger_url, port=port) as receiver:
            click.echo(f"webhook receiver: listening on {receiver.url}, Outreach delivers to {receiver.public_url}")
            threading.Event().wait()
    except ApiError as exc:  # e.g. a grant without webhooks.all: `auth connect` asks only for the mapping's scopes
        raise click.ClickException(f"Outreach refused the webhook subscription: {exc}") from None
    except OSError as exc:
        raise click.ClickException(f"the webhook receiver could not bind: {exc}") from None
    except KeyboardInterrupt:
        click.echo("webhook receiver stopped")
