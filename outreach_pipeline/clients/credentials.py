"""The error a client raises when it is built without the credentials it needs.

The clients have no default credentials: a default would be the sandbox's, and a client given only a
real service's URL would send them there. So a client missing any refuses to start, naming each one.
"""

from __future__ import annotations

from collections.abc import Sequence


class MissingCredentials(ValueError):
    """A client was constructed without credentials it needs.

    Attributes:
        client: The client class, e.g. ``WorkbooksClient``.
        base_url: The service it was pointed at.
        missing: The constructor arguments that are missing or empty, in the order they are documented.
        alternative: Another way to authenticate, when there is one (e.g. a login instead of an api key).
    """

    def __init__(self, client: str, base_url: str, missing: Sequence[str], alternative: str | None = None) -> None:
        self.client = client
        self.base_url = base_url
        self.missing = tuple(missing)
        self.alternative = alternative
        instead = f" ({alternative} instead)" if alternative else ""
        super().__init__(
            f"{client} for {base_url} has no {', '.join(self.missing)}{instead}: pass the credentials of the "
            "service at that URL (for the local sandbox, those in outreach_pipeline.sandbox.credentials)"
        )
