"""Where the Outreach OAuth tokens live between clients, processes and runs.

Outreach rotates refresh tokens and answers 429 to a second mint for the same user within 60 s, so the
newest refresh token must survive a crash and the clients of one installation must share one access
token. A store persists them (a file written atomically, or memory for tests) and serialises refreshes.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError


class StoredTokens(BaseModel):
    """The OAuth tokens kept between clients and runs.

    Attributes:
        refresh_token: The newest refresh token (they rotate; the previous one may soon stop working).
        access_token: The last access token minted, shared so a new client does not mint another one
            (Outreach answers 429 to a second mint for the same user within 60 s).
        access_token_expires_at: When ``access_token`` expires, in epoch seconds.
        scopes: The scopes Outreach granted with the last token (its token response says), when known.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    refresh_token: SecretStr = Field(min_length=1)
    access_token: SecretStr | None = None
    access_token_expires_at: float | None = None
    scopes: tuple[str, ...] | None = None


class TokenStore(Protocol):
    """Where the rotating OAuth refresh token and the current access token live between clients and runs."""

    def load(self) -> StoredTokens | None:
        """The persisted tokens, or None when nothing is stored."""
        ...

    def save(self, tokens: StoredTokens) -> None:
        """Persist newly issued tokens durably before they are used."""
        ...

    def clear(self) -> bool:
        """Forget the stored tokens; True when there were any."""
        ...

    def refresh_lock(self) -> AbstractContextManager[object]:
        """Held while one client reloads the tokens and, if still needed, mints new ones.

        Clients sharing a store then mint once between them instead of once each.
        """
        ...


class MemoryTokenStore:
    """A process-local token store (lost on restart; fine for tests and one-off runs).

    Args:
        refresh_token: A refresh token to start with.
    """

    def __init__(self, refresh_token: SecretStr | None = None) -> None:
        self._tokens = StoredTokens(refresh_token=refresh_token) if refresh_token is not None else None
        self._lock = threading.RLock()

    def load(self) -> StoredTokens | None:
        """The stored tokens."""
        return self._tokens

    def save(self, tokens: StoredTokens) -> None:
        """Replace the stored tokens."""
        self._tokens = tokens

    def clear(self) -> bool:
        """Forget the stored tokens."""
        had, self._tokens = self._tokens is not None, None
        return had

    def refresh_lock(self) -> AbstractContextManager[object]:
        """A lock shared by the clients of this store (threads of one process)."""
        return self._lock

    def __repr__(self) -> str:
        return "MemoryTokenStore(<redacted>)"


class FileTokenStore:
    """Keeps the tokens in a JSON file written atomically with 0600 permissions.

    Atomic (temp file + fsync + rename) because a half-written file after a crash would lose the only
    valid refresh token, and a lost token means a user must re-authorise the app. Files written before
    access tokens were stored (``refresh_token`` and ``saved_at`` only) still load. Refreshes are
    serialised across processes with ``flock`` on ``<file>.lock``, because Dagster runs each step of a
    run in its own process and each opens its own client.

    Args:
        path: The token file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def load(self) -> StoredTokens | None:
        """The stored tokens, or None when the file does not exist.

        Raises:
            ValueError: When the file exists but is not a token file written by this class (the
                message names the file and the field, never a token).
        """
        try:
            content = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except json.JSONDecodeError as exc:
            raise ValueError(f"token file {self.path} is not valid JSON") from exc
        if not isinstance(content, dict):
            raise ValueError(f"token file {self.path} does not hold a JSON object")
        content.pop("saved_at", None)  # written by earlier versions; the file's mtime says the same
        try:
            return StoredTokens.model_validate(content)
        except ValidationError as exc:
            # Only the location and message: pydantic's own text would quote the token.
            first = exc.errors(include_input=False)[0]
            field = ".".join(str(part) for part in first["loc"])
            raise ValueError(f"token file {self.path}: field '{field}': {first['msg']}") from None

    def save(self, tokens: StoredTokens) -> None:
        """Write the tokens atomically, readable only by the owner."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = json.dumps(
            {
                "refresh_token": tokens.refresh_token.get_secret_value(),
                "access_token": tokens.access_token.get_secret_value() if tokens.access_token else None,
                "access_token_expires_at": tokens.access_token_expires_at,
                "scopes": list(tokens.scopes) if tokens.scopes is not None else None,
            }
        )
        descriptor, temp_name = tempfile.mkstemp(prefix=".token-", dir=self.path.parent)
        try:
            os.fchmod(descriptor, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp_name, self.path)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise

    def clear(self) -> bool:
        """Delete the token file, under the refresh lock so no client is rotating it meanwhile."""
        with self.refresh_lock():
            existed = self.path.exists()
            self.path.unlink(missing_ok=True)
        return existed

    @contextmanager
    def refresh_lock(self) -> Iterator[None]:
        """An exclusive ``flock`` on ``<file>.lock`` (created empty, 0600), released on exit."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.path.with_name(f"{self.path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)  # closing the descriptor releases the lock

    def __repr__(self) -> str:
        return f"FileTokenStore({str(self.path)!r})"
