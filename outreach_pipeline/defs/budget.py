"""Outreach's request budget in the sync: who may spend it, and what a run does when it runs out.

Outreach allows 10,000 requests per hour per user, counted by Outreach across every run, worker and
Dagster instance using the same user. The rules:

* Every asset that calls an API holds that API's pool (`outreach_api`, `workbooks_api`; one step at a time
  per pool in `dagster.yaml`), and no asset calls both: the Outreach-side preflight, the extracts (which also
  pull retried and link-target records) and the duplicate-email lookup call Outreach only; the Workbooks
  preflight and the loads call Workbooks only, receiving what Outreach said as data.
* The client paces itself by Outreach's `X-RateLimit-*` headers, which count every caller's requests, and
  retries 429s after `Retry-After`. It waits only when the budget resets within
  `OutreachResource.max_rate_limit_wait_seconds` (default 60 s); a later reset raises `RateBudgetExhausted`.
* A step that meets `RateBudgetExhausted` fails at once with one message saying until when and what is left:
  the run ends partial. Steps that do not need the failed one still run (Dagster skips only its
  downstream), and whatever was written is in the ledger, since loads record their outcomes even when they
  stop half way.
* Nothing is lost and nothing is written twice: an Outreach step hands nothing on when it fails (an extract's
  windows stay unmaterialized, a load waiting on a duplicate lookup does not start), so the next run over
  the same windows reads them again, and the compare-before-writing load leaves records written by the
  partial run unchanged.

What "left" means per step: the preflight leaves the whole run (nothing was read or written); an extract
leaves its entity's records for the run's windows (and the records the ledger queued for retry); the
duplicate lookup leaves the staged records of its entity, and the load of every entity linking to them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from outreach_pipeline.clients.http import RateBudgetExhausted


@contextmanager
def outreach_budget(left_for_next_run: str) -> Iterator[None]:
    """Turn a spent Outreach budget inside the block into the step's one clear failure.

    Args:
        left_for_next_run: What the next run must still do, e.g. "120 prospects records".
    """
    try:
        yield
    except RateBudgetExhausted as exc:
        raise dg.Failure(
            description=(
                f"Outreach request budget exhausted until {exc.reset_at:%H:%M} UTC; {left_for_next_run} left "
                "for the next run (run the same windows again after the reset)"
            ),
            metadata={"budget_resets_at": exc.reset_at.isoformat(), "request": f"{exc.method} {exc.path}"},
            allow_retries=False,
        ) from exc
