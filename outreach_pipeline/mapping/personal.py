"""Personal data kept out of what the sync reports to Dagster.

Fields marked ``personal`` in the mapping (email addresses, phone numbers) are masked in every value the sync
hands to Dagster as metadata: Dagster keeps run metadata in its event store for as long as it keeps the run, and
anyone with access to the UI reads it. The two systems and the sync's own ledger keep the real values. A setting
(``SyncSettings.show_personal_data``) shows them, e.g. while debugging on a sandbox.
"""

import re
from collections.abc import Mapping
from typing import Any

MASK = "<personal: hidden>"


def mask_personal(values: Mapping[str, Any], personal: frozenset[str]) -> dict[str, Any]:
    """``values`` (field name -> value) with every non-blank value of a ``personal`` field replaced by MASK.

    A blank stays blank, so a preview still shows that a value was cleared.
    """
    return {name: MASK if name in personal and value not in (None, "") else value for name, value in values.items()}


_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
# A phone number: at least 7 digits, with the separators people write (+, spaces, dots, dashes, brackets).
_PHONE = re.compile(r"\+?\(?\d[\d\s().-]{5,}\d")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def mask_personal_text(text: str | None) -> str | None:
    """``text`` (a message that may quote values) with every email address and phone number replaced by MASK.

    A message names the record and quotes the value Workbooks or Outreach refused; the value may be an email or
    a phone number from any field, so messages are masked by what the value looks like, not by field. Dates
    (``2026-11-29``) and short numbers (ids) are left alone.
    """
    if not text:
        return text
    text = _EMAIL.sub(MASK, text)

    def phone(match: re.Match[str]) -> str:
        found = match.group(0)
        digits = sum(character.isdigit() for character in found)
        return found if digits < 7 or _DATE.search(found) else MASK

    return _PHONE.sub(phone, text)
