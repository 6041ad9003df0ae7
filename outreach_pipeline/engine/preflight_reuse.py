"""When a passing preflight may stand in for a new one (pure: no Dagster, no HTTP).

A preflight fetches both APIs' schemas (three requests, two to Outreach). Schemas change rarely, so a run
may reuse a passing check instead of repeating it, under these rules:

* the same mapping: a hash of the mapping set *and* of the entities checked (a changed mapping file, or a run
  checking other entities, checks again);
* the same service: the API base URL the check was made against;
* younger than the maximum age, counted from when the check *ran* (a reuse copies the original's
  ``checked_at``, so reuses never extend each other); a maximum age of 0 checks on every run;
* no failed check since: a failing preflight is never reused, and it also ends the reuse of older passes,
  so a schema that broke keeps failing runs until it is fixed and a check passes again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from outreach_pipeline.mapping.models import MappingSet


class PreflightOutcome(StrEnum):
    """What a preflight step did, as its materialization's `preflight` metadata says."""

    RAN = "ran"
    REUSED = "reused"
    FAILED = "failed"


MAPPING_HASH = "mapping_hash"
API_BASE_URL = "api_base_url"
CHECKED_AT = "checked_at"
OUTCOME = "preflight"
REUSED_FROM_RUN = "reused_from_run"


def mapping_hash(mapping_set: MappingSet, entities: Iterable[str]) -> str:
    """A stable digest of the mapping set and the entities a check covers."""
    body = json.dumps({"mapping": mapping_set.model_dump(mode="json"), "entities": sorted(entities)},
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class PreflightStamp:
    """What a check was about and when it ran."""

    mapping_hash: str
    api_base_url: str
    checked_at: datetime

    def metadata(self, outcome: PreflightOutcome) -> dict[str, str]:
        return {OUTCOME: outcome.value, MAPPING_HASH: self.mapping_hash, API_BASE_URL: self.api_base_url,
                CHECKED_AT: self.checked_at.isoformat()}


def stamp_from_metadata(metadata: Mapping[str, Any]) -> PreflightStamp | None:
    """The stamp an earlier materialization or observation carries; None when it carries none (older runs)."""
    try:
        return PreflightStamp(mapping_hash=str(metadata[MAPPING_HASH]), api_base_url=str(metadata[API_BASE_URL]),
                              checked_at=datetime.fromisoformat(str(metadata[CHECKED_AT])))
    except (KeyError, ValueError):
        return None


def reusable(previous: PreflightStamp | None, last_failure: datetime | None, wanted: PreflightStamp,
             max_age: timedelta) -> bool:
    """Whether the passing check `previous` may stand in for the check `wanted` (whose `checked_at` is now).

    Args:
        previous: The latest passing check, or None.
        last_failure: When the latest failed check ran, or None.
        wanted: The check this run would make.
        max_age: The oldest a reused check may be; zero or less: never reuse.
    """
    if previous is None or max_age <= timedelta(0):
        return False
    if (previous.mapping_hash, previous.api_base_url) != (wanted.mapping_hash, wanted.api_base_url):
        return False
    if last_failure is not None and last_failure >= previous.checked_at:
        return False
    age = wanted.checked_at - previous.checked_at
    return timedelta(0) <= age <= max_age
