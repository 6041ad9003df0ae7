"""Personal data kept out of what the sync reports to Dagster.

Fields marked ``personal`` in the mapping (email addresses, phone numbers) are masked in every value the sync
hands to Dagster as metadata: Dagster keeps run metadata in its event store for as long as it keeps the run, and
anyone with access to the UI reads it. The two systems and the sync's own ledger keep the real values. A setting
(``SyncSettings.show_personal_data``) shows them, e.g. while debugging on a sandbox.
"""

from collections.abc import Mapping
from typing import Any

MASK = "<personal: hidden>"


def mask_personal(values: Mapping[str, Any], personal: frozenset[str]) -> dict[str, Any]:
    """``values`` (field name -> value) with every non-blank value of a ``personal`` field replaced by MASK.

    A blank stays blank, so a preview still shows that a value was cleared.
    """
    return {name: MASK if name in personal and value not in (None, "") else value for name, value in values.items()}
