"""Values as the planner reads them: Workbooks record fields, staged cells, flags, timestamps (pure helpers)."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from datetime import datetime
from typing import Any

import pandas as pd

from outreach_pipeline.engine.ledger import RecordState
from outreach_pipeline.engine.outcome import Outcome
from outreach_pipeline.mapping.models import BooleanTransform, StringTransform
from outreach_pipeline.mapping.normalise import is_blank, normalise_value


def read_field(record: Mapping[str, Any], name: str) -> Any:
    """A field of a Workbooks record, flat (``main_location[email]``) or nested (``{"main_location": {...}}``)."""
    if name in record:
        return record[name]
    if "[" in name and name.endswith("]"):
        parent, child = name[:-1].split("[", 1)
        nested = record.get(parent)
        if isinstance(nested, Mapping):
            return read_field(nested, child)
    return None


def as_dicts(data: Iterable[Mapping[str, Any]] | pd.DataFrame) -> list[dict[str, Any]]:
    if isinstance(data, pd.DataFrame):
        # Column by column (one tolist per column) rather than to_dict("records"), which boxes every cell.
        names = list(data.columns)
        columns = [list(map(python_value, data.iloc[:, position].tolist())) for position in range(len(names))]
        return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)] if names else [
            {} for _ in range(len(data))
        ]
    return [{key: python_value(value) for key, value in row.items()} for row in data]


def python_value(value: Any) -> Any:
    kind = type(value)
    if kind is str or kind is int or kind is bool:  # the common cells, as the general way below returns them
        return value
    if kind is float:
        return None if value != value else value
    if value is pd.NA:  # the missing cell of nullable columns (strings, Int64, boolean)
        return None
    if isinstance(value, list | tuple | dict):
        return value
    if hasattr(value, "tolist") and not isinstance(value, pd.Timestamp):
        return value.tolist()
    return None if is_blank(value) and not isinstance(value, str) else value


def blank_value(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def truthy(value: Any) -> bool:
    return normalise_value(value, _BOOLEAN) is True


def error_set_by_us(message: Any, state: RecordState | None, outreach_type: str) -> bool:
    """Whether the Sync Error flag on a record is this integration's own, from a failure it recorded.

    Every message the integration writes starts with the record's label (``prospect 17: ...``), and the ledger
    says the record's last outcome was a failure. The exact text may differ from the ledger's last error (a
    later failure of another kind did not rewrite the flag), so the label, not the text, identifies it.
    """
    if state is None or state.last_outcome is not Outcome.FAILED:
        return False
    text = normalise_value(message, _STRING)
    return isinstance(text, str) and text.startswith(f"{outreach_type} {state.outreach_id}: ")


def is_stale(incoming: datetime | None, state: RecordState | None) -> bool:
    """Whether the ledger already applied a newer ``updatedAt`` than the row's (`incoming`)."""
    if state is None or state.outreach_updated_at is None:
        return False
    return incoming is not None and incoming < state.outreach_updated_at


def as_datetime(value: Any) -> datetime | None:
    if is_blank(value):
        return None
    moment = pd.Timestamp(value)
    return (moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")).to_pydatetime()


def timestamp_key(value: Any) -> float:
    moment = as_datetime(value)
    return moment.timestamp() if moment is not None else float("-inf")


def optional_int(value: Any) -> int | None:
    return None if is_blank(value) else int(value)


def jsonable(value: Hashable) -> Any:
    return list(value) if isinstance(value, tuple) else value


def flag_transform(name: str, error_field: str) -> Any:
    return _BOOLEAN if name == error_field else _STRING


_BOOLEAN = BooleanTransform()
_STRING = StringTransform()
