"""Asset groups: one per asset-key prefix, so the group a UI filter selects is the prefix a key starts with.

Rules:
* An asset's group is the first part of its key (`outreach/...` in `outreach`, `staged/...` in `staged`,
  `workbooks/...` in `workbooks`); `group_of` gives it and a test holds every asset to it.
* Dagster's open-source UI has no group descriptions (its GraphQL `AssetGroup` carries only a name and keys,
  and `Definitions(metadata=...)` is not displayed), so each asset's description ends with its group's
  (`describe_group`), and the code location's definitions metadata carries them all for API readers.
"""

from __future__ import annotations

from enum import StrEnum

import dagster as dg


class Group(StrEnum):
    """The asset groups, named as the key prefixes of their assets."""

    OUTREACH = "outreach"
    STAGED = "staged"
    WORKBOOKS = "workbooks"
    DRY_RUN = "dry_run"


GROUP_DESCRIPTIONS: dict[Group, str] = {
    Group.OUTREACH: (
        "Everything that reads or writes Outreach: the field preflight, each entity's changed records "
        "(outreach/accounts, /prospects, ...), the never-synced records this run's records point at "
        "(outreach/referenced_*), the duplicate-email lookup, and the Workbooks -> Outreach writes "
        "(outreach/*_written). Holds the outreach_api pool."
    ),
    Group.STAGED: (
        "Outreach records mapped to Workbooks fields by the mapping file (pure pandas, no API calls); each "
        "asset's description and `mapping` metadata show the field mapping."
    ),
    Group.WORKBOOKS: (
        "Everything that reads or writes Workbooks: the field preflight, the loads of staged records "
        "(workbooks/organisations, /people, ...), the records selected for Outreach (workbooks/changed_*) and "
        "the Outreach ids written back (workbooks/*_linked). Holds the workbooks_api pool."
    ),
    Group.DRY_RUN: (
        "The dry run's plan (dry_run/sync_plan): what a sync of the selected windows would create, update, skip "
        "and fail in both systems, planned by the sync's own assets against a throw-away instance; writes nothing."
    ),
}


def group_of(key: dg.AssetKey) -> Group:
    """The group of an asset: its key's prefix."""
    return Group(key.path[0])


def describe_group(description: str | None, key: dg.AssetKey) -> str:
    """An asset's description followed by its group's (the UI shows no group descriptions)."""
    group = group_of(key)
    return f"{(description or '').rstrip()}\n\nGroup `{group}`: {GROUP_DESCRIPTIONS[group]}".lstrip()
