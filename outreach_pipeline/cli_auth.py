"""`outreach-pipeline auth`: connect an Outreach account, show the connection, disconnect it.

The Outreach app comes from the environment as for a sync (OUTREACH_CLIENT_ID, OUTREACH_CLIENT_SECRET,
OUTREACH_REDIRECT_URI and OUTREACH_BASE_URL; the sandbox's app when none is set). The grant is kept in the
token store the sync's resource uses (one file per service and app under DAGSTER_HOME, mode 0600), so a
sync after `connect` needs no OUTREACH_REFRESH_TOKEN. No command prints, logs or stores a token elsewhere.
"""

from __future__ import annotations

import os
import stat
import sys
import webbrowser
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click
from pydantic import SecretStr

from outreach_pipeline.clients.oauth_connect import (
    ConnectError,
    LoopbackReceiver,
    authorize_url,
    code_from_redirect,
    exchange_code,
    new_state,
)
from outreach_pipeline.mapping.models import MappingError, MappingSet, load_mapping_set
from outreach_pipeline.mapping.scopes import missing_scopes, required_scopes
from outreach_pipeline.settings import SettingsError, load_settings

if TYPE_CHECKING:
    from outreach_pipeline.defs.resources import OutreachResource


def _context() -> tuple[OutreachResource, MappingSet]:
    # Imported here: Dagster is slow to import, and only these commands need it.
    from outreach_pipeline.defs.resources import ResourceConfigError, outreach_resource_from_env

    try:
        resource = outreach_resource_from_env().process_config_and_initialize()
        settings = load_settings()
        return resource, load_mapping_set(settings.mapping_path)
    except (ResourceConfigError, SettingsError, MappingError) as exc:
        raise click.ClickException(str(exc)) from exc


def _when(epoch_seconds: float | None) -> str:
    if epoch_seconds is None:
        return "unknown"
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%d %H:%M UTC")


@click.group()
def auth() -> None:
    """Connect the Outreach account the sync acts as, show it, or disconnect it."""


@auth.command("connect")
@click.option("--headless", is_flag=True,
              help="Print the URL and read the redirect URL you paste back (a server without a browser).")
@click.option("--no-browser", is_flag=True, help="Print the URL instead of opening a browser.")
@click.option("--timeout", default=300.0, show_default=True, type=click.FloatRange(1, 3600),
              help="Seconds to wait for the redirect after consent.")
def connect(headless: bool, no_browser: bool, timeout: float) -> None:
    """Authorize the sync in Outreach (the scopes the mapping needs) and store the grant."""
    resource, mappings = _context()
    scopes = required_scopes(mappings)
    state = new_state()
    url = authorize_url(resource.base_url, client_id=resource.client_id, redirect_uri=resource.redirect_uri,
                        scopes=scopes, state=state)
    try:
        if headless:
            click.echo(f"Open this URL in a browser, approve, then paste the URL you are sent to:\n{url}", err=True)
            redirect = click.prompt("Redirect URL", err=True).strip()
        else:
            with LoopbackReceiver(resource.redirect_uri) as receiver:
                click.echo(f"Waiting for Outreach on 127.0.0.1:{receiver.port}. Open this URL to approve:\n{url}",
                           err=True)
                if not no_browser:
                    webbrowser.open(url)
                redirect = receiver.wait(timeout)
        code = code_from_redirect(redirect, state)
        grant = exchange_code(resource.base_url, client_id=resource.client_id,
                              client_secret=SecretStr(resource.client_secret), redirect_uri=resource.redirect_uri,
                              code=code, token_store=resource.token_store())
    except ConnectError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Connected to Outreach at {resource.base_url} (the token response names no user).")
    click.echo(f"Granted scopes: {' '.join(grant.scopes) or '(none named)'}")
    if missing := missing_scopes(scopes, grant.scopes):
        click.echo(f"Not granted, though the mapping needs them: {' '.join(missing)}", err=True)
    click.echo(f"Access token expires {_when(grant.access_token_expires_at)}; the grant is stored in "
               f"{resource.token_store().path} (mode 0600).")
    if missing:
        sys.exit(1)


@auth.command("status")
def status() -> None:
    """Show the connected grant: scopes granted against those the mapping needs, and token expiry."""
    resource, mappings = _context()
    store = resource.token_store()
    try:
        stored = store.load()
    except ValueError as exc:  # a damaged file: the message names the file and field, never a token
        raise click.ClickException(f"{exc}; run `outreach-pipeline auth connect` to replace it") from None
    if stored is None:
        source = "OUTREACH_REFRESH_TOKEN is set" if os.environ.get("OUTREACH_REFRESH_TOKEN") else "none"
        click.echo(f"Outreach at {resource.base_url}: no stored grant (environment grant: {source}).")
        click.echo("Connect an account with `outreach-pipeline auth connect`.")
        return
    needed = required_scopes(mappings)
    granted = stored.scopes
    mode = stat.S_IMODE(store.path.stat().st_mode)
    click.echo(f"Outreach at {resource.base_url}: connected (the token response names no user).")
    click.echo(f"Grant stored in {store.path} (mode {mode:04o}).")
    click.echo(f"Scopes granted: {' '.join(granted) if granted is not None else 'not reported by Outreach'}")
    click.echo(f"Scopes the mapping needs: {' '.join(needed)}")
    if granted is not None:
        missing = missing_scopes(needed, granted)
        click.echo(f"Missing: {' '.join(missing) if missing else 'none'}")
    click.echo(f"Access token expires: {_when(stored.access_token_expires_at)} (it is renewed automatically)")


@auth.command("disconnect")
def disconnect() -> None:
    """Delete the stored grant; a sync then asks for `auth connect` (or OUTREACH_REFRESH_TOKEN)."""
    resource, _ = _context()
    store = resource.token_store()
    if store.clear():
        click.echo(f"Deleted the stored Outreach grant for {resource.base_url} ({store.path}).")
    else:
        click.echo(f"No stored Outreach grant for {resource.base_url}.")
    # Outreach documents no token revocation endpoint; its refresh tokens expire 14 days after issue.
    click.echo("Outreach documents no token revocation: to cut access at once, remove the app from the "
               "account's connected apps in Outreach.")
