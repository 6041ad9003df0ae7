"""Run config the sync's assets take, kept apart from the asset builders so jobs, sensors and the CLI share them.

* `WorkbooksReadConfig.from_beginning` (step `workbooks_changes_for_outreach`): the Workbooks read of the
  Workbooks -> Outreach direction drops its lower bound, as `ExtractConfig.from_beginning` does for the Outreach
  reads: the first sync's way to cover Workbooks records last changed before the first window.
* `DryRunConfig.dry_run` (every step that writes: the `workbooks/*` loads, `outreach_writes_from_workbooks`,
  `workbooks_links_from_outreach`): plan as usual, write nothing to either system or to the ledger, and report
  the plan instead (`defs.dry_run`).
"""

from __future__ import annotations

import dagster as dg


class WorkbooksReadConfig(dg.Config):
    """`from_beginning` reads the selected Workbooks records changed before the window too (first sync)."""

    from_beginning: bool = False


class DryRunConfig(dg.Config):
    """`dry_run` plans without writing: 0 writes to Outreach, Workbooks and the sync ledger."""

    dry_run: bool = False
