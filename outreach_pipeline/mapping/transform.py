"""Vectorised staging of extracted Outreach frames into Workbooks-shaped frames (pure: no I/O).

Each field mapping is staged column-at-a-time: the source column is read, converted by its transform, and
every invalid cell becomes a message naming the record (``prospect 17``), the Outreach source and the
Workbooks field. Problems are gathered into a per-row ``validation_errors`` list of error records (field,
kind, message; see ``mapping.errors``) without a row loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from outreach_pipeline.clients.formats import format_wb_currency, format_wb_date, format_wb_datetime
from outreach_pipeline.mapping.errors import ErrorKind, ValidationError
from outreach_pipeline.mapping.models import (
    EntityMapping,
    FieldMapping,
    LinkTransform,
    PicklistTransform,
    SourceRef,
    StringTransform,
    WbCurrencyTransform,
)
from outreach_pipeline.mapping.normalise import FALSE_WORDS, TRUE_WORDS
from outreach_pipeline.mapping.preflight import preflight

__all__ = ["STAGING_META_COLUMNS", "column_lineage", "lineage_columns", "preflight", "stage_records"]

STAGING_META_COLUMNS = ("outreach_id", "outreach_updated_at", "validation_errors")
_PREVIEW_CHARS = 40
_CURRENCY_CODE_PATTERN = r"^[A-Z]{3}$"


@dataclass(frozen=True)
class _Problems:
    """Per row, the message of one kind of problem with one field (NA where there is none)."""

    field: str | None
    kind: ErrorKind
    messages: pd.Series


@dataclass(frozen=True)
class _StagedColumn:
    """A transformed column and its problems, at most one per row across the list."""

    values: pd.Series
    problems: list[_Problems]

    def valid(self) -> pd.Series:
        """Rows where no problem was found."""
        mask = pd.Series(True, index=self.values.index)
        for problem in self.problems:
            mask &= problem.messages.isna()
        return mask


@dataclass(frozen=True)
class _Context:
    """What a transform needs besides its source column."""

    frame: pd.DataFrame
    entity: EntityMapping
    field: FieldMapping
    prefix: pd.Series  # "prospect 17: " per row


def stage_records(
    frame: pd.DataFrame, entity: EntityMapping, *, lookups: dict[str, pd.DataFrame] | None = None
) -> pd.DataFrame:
    """Stage an extracted Outreach frame for Workbooks.

    Args:
        frame: extracted frame (docs/ARCHITECTURE.md): ``id``, ``updatedAt``, attributes, ``<relation>Id``.
        entity: the entity mapping to apply.
        lookups: frames for related sources, keyed by relation name, e.g. ``{"opportunityStage": stages}``
            (columns ``id`` + attributes) or ``{"opportunityProspectRole": roles}``.

    Returns:
        One row per input row, in input order: one column per Workbooks field written by this direction,
        the link key column, ``outreach_id``, ``outreach_updated_at`` and ``validation_errors``.

    A source column missing from ``frame`` reads as empty on every row (see ``_extracted_column``).

    Raises:
        KeyError: a lookup frame the mapping needs, or the link key column, is missing (names entity and field).
    """
    lookups = lookups or {}
    frame = frame.reset_index(drop=True)
    if "id" not in frame.columns:
        raise KeyError(f"{entity.name}: extracted frame has no 'id' column")
    ids = frame["id"].astype("Int64")
    prefix = entity.outreach_type + " " + ids.astype("string").fillna("?") + ": "

    staged: dict[str, pd.Series] = {}
    problems: list[_Problems] = [_duplicate_id_problems(ids, prefix)]
    for field in entity.to_workbooks_fields():
        context = _Context(frame=frame, entity=entity, field=field, prefix=prefix)
        column = _stage_field(context, _read_source(context, lookups))
        staged[field.workbooks] = column.values
        problems.extend(column.problems)
        if field.required:
            problems.append(_required_problems(context, column))
    staged[entity.match.link_key] = _link_key_values(frame, entity)

    result = pd.DataFrame(staged, index=frame.index)
    result["outreach_id"] = ids
    result["outreach_updated_at"] = _updated_at(frame)
    result["validation_errors"] = _collect_problems(problems, frame.index)
    return result


def outreach_fields(entity: EntityMapping) -> list[str]:
    """The Outreach attributes and relationships the mapping reads, for a sparse fieldset (`fields[type]=`).

    Reading only these keeps a 1,000-record prospect page to a fraction of its ~6 MB. Relationship ids are
    flattened as `<relationship>Id` in the extracted frame, so a link's source names its relationship.

    Args:
        entity: the entity mapping.

    Returns:
        Sorted field names, always with `createdAt` and `updatedAt` (the sync window is computed from them).
    """
    names = {"createdAt", "updatedAt"}
    for field in entity.to_workbooks_fields():
        source = field.source
        if source.kind == "related":
            names.add(source.relation or "")
        elif source.kind == "column" and isinstance(field.transform, LinkTransform) and source.column.endswith("Id"):
            names.add(source.column.removesuffix("Id"))
        elif source.kind in ("column", "element"):
            names.add(source.column)
        if isinstance(field.transform, WbCurrencyTransform):
            names.add(field.transform.currency_source)
    if entity.match.outreach_key != "id":
        names.add(entity.match.outreach_key.removesuffix("Id"))
    names.discard("")
    return sorted(names)


def column_lineage(entity: EntityMapping) -> dict[str, list[str]]:
    """Workbooks field -> the Outreach sources it is computed from, for Dagster column lineage.

    Args:
        entity: the entity mapping.

    Returns:
        ``{workbooks_field: [outreach_source, ...]}`` for every field this direction writes, plus the link key.
    """
    lineage = {entity.match.link_key: [entity.match.outreach_key]}
    for field in entity.to_workbooks_fields():
        sources = [field.outreach]
        if isinstance(field.transform, WbCurrencyTransform):
            sources.append(field.transform.currency_source)
        lineage[field.workbooks] = sources
    return lineage


def lineage_columns(entity: EntityMapping) -> dict[str, list[str]]:
    """Workbooks field -> the extracted frame's columns it is computed from (column lineage).

    Source expressions are read with the mapping's own parser: ``emails[0]`` comes from ``emails``,
    ``opportunityStage.name`` from ``opportunityStageId``, a collection from its relation.
    """
    def column_of(expression: str) -> str:
        source = SourceRef.parse(expression)
        return (source.relation or source.column) if source.kind == "collection" else source.column

    return {
        field: list(dict.fromkeys(column_of(source) for source in sources))
        for field, sources in column_lineage(entity).items()
    }


# --- reading sources -------------------------------------------------------------------------------------


def _read_source(context: _Context, lookups: dict[str, pd.DataFrame]) -> pd.Series:
    source = context.field.source
    readers: dict[str, Callable[[_Context, SourceRef, dict[str, pd.DataFrame]], pd.Series]] = {
        "column": _read_column,
        "element": _read_element,
        "related": _read_related,
        "collection": _read_collection,
    }
    return readers[source.kind](context, source, lookups)


def _require_column(context: _Context, frame: pd.DataFrame, column: str, what: str) -> pd.Series:
    if column not in frame.columns:
        raise KeyError(
            f"{context.entity.name}: field {context.field.workbooks} needs column {column!r} in {what}"
        )
    return frame[column]


def _extracted_column(context: _Context, column: str) -> pd.Series:
    # A column is missing when no record of the read carried the attribute: a window with no changes, or
    # responses that left out a requested attribute. Such a value is empty, as a null would be. A misspelt
    # source never gets this far: the preflight checks every source against Outreach's schema first.
    if column not in context.frame.columns:
        return pd.Series([None] * len(context.frame), index=context.frame.index, dtype=object)
    return context.frame[column]


def _read_column(context: _Context, source: SourceRef, _: dict[str, pd.DataFrame]) -> pd.Series:
    return _extracted_column(context, source.column)


def _read_element(context: _Context, source: SourceRef, _: dict[str, pd.DataFrame]) -> pd.Series:
    arrays = _extracted_column(context, source.column)
    index = source.index or 0
    # Elementwise on one column: arrays are Python lists by contract, and a non-list cell is treated as absent.
    return arrays.map(
        lambda cell: cell[index] if isinstance(cell, list | tuple) and len(cell) > index else None
    )


def _lookup(context: _Context, source: SourceRef, lookups: dict[str, pd.DataFrame]) -> pd.DataFrame:
    if source.relation not in lookups:
        raise KeyError(
            f"{context.entity.name}: field {context.field.workbooks} needs the lookup frame "
            f"{source.relation!r} (source {context.field.outreach})"
        )
    return lookups[source.relation]


def _read_related(context: _Context, source: SourceRef, lookups: dict[str, pd.DataFrame]) -> pd.Series:
    lookup = _lookup(context, source, lookups)
    attribute = _require_column(context, lookup, source.attribute or "", f"lookup {source.relation!r}")
    by_id = pd.Series(
        attribute.to_numpy(), index=_require_column(context, lookup, "id", "lookup").astype("Int64")
    )
    by_id = by_id[~by_id.index.duplicated(keep="last")]
    keys = _extracted_column(context, source.column).astype("Int64")
    return keys.map(by_id)


def _read_collection(context: _Context, source: SourceRef, lookups: dict[str, pd.DataFrame]) -> pd.Series:
    lookup = _lookup(context, source, lookups)
    _require_column(context, lookup, source.column, f"lookup {source.relation!r}")
    _require_column(context, lookup, source.attribute or "", f"lookup {source.relation!r}")
    # Sorting by the lookup's own id keeps lists of different attributes (prospect ids, roles) aligned.
    order = [source.column, "id"] if "id" in lookup.columns else [source.column]
    ordered = lookup.sort_values(order, kind="stable")
    grouped = ordered.groupby(ordered[source.column].astype("Int64"))[source.attribute].agg(list)
    collected = context.frame["id"].astype("Int64").map(grouped)
    return collected.map(lambda cell: cell if isinstance(cell, list) else [])


# --- transforms ------------------------------------------------------------------------------------------


def _stage_field(context: _Context, raw: pd.Series) -> _StagedColumn:
    transform = context.field.transform
    if isinstance(transform, LinkTransform) and transform.many:
        return _stage_int_list(context, raw)
    stagers: dict[str, Callable[[_Context, pd.Series], _StagedColumn]] = {
        "string": _stage_string,
        "string_list": _stage_string_list,
        "integer": _stage_integer,
        "link": _stage_integer,
        "boolean": _stage_boolean,
        "wb_date": _stage_date,
        "wb_datetime": _stage_datetime,
        "wb_currency": _stage_currency,
        "picklist": _stage_picklist,
    }
    return stagers[transform.kind](context, raw)


def _problems_where(context: _Context, mask: pd.Series, detail: pd.Series | str, kind: ErrorKind) -> _Problems:
    """Problems of ``kind`` with messages ``"<type> <id>: <detail>"`` on rows where ``mask`` holds."""
    messages = (context.prefix + detail).where(mask.fillna(False).astype(bool), pd.NA)
    return _Problems(field=context.field.workbooks, kind=kind, messages=messages)


def _preview(raw: pd.Series) -> pd.Series:
    text = raw.astype("string").str.slice(0, _PREVIEW_CHARS)
    return "'" + text + "'"


def _clean_text(raw: pd.Series) -> pd.Series:
    text = raw.astype("string").str.replace("\r\n", "\n", regex=False).str.strip()
    return text.mask(text == "", pd.NA)


def _no_problems() -> list[_Problems]:
    return []


def _stage_string(context: _Context, raw: pd.Series) -> _StagedColumn:
    text = _clean_text(raw)
    transform = context.field.transform
    max_length = transform.max_length if isinstance(transform, StringTransform) else None
    if max_length is None:
        return _StagedColumn(text, _no_problems())
    lengths = text.str.len()
    detail = (
        f"{context.field.outreach} is "
        + lengths.astype("string")
        + f" characters, over the {max_length} limit of {context.field.workbooks}"
    )
    return _StagedColumn(text, [_problems_where(context, lengths > max_length, detail, ErrorKind.TOO_LONG)])


def _stage_integer(context: _Context, raw: pd.Series) -> _StagedColumn:
    present = _present(raw)
    numbers = pd.to_numeric(raw.where(present, None).astype("object"), errors="coerce")
    integral = numbers.notna() & (numbers % 1 == 0)
    invalid = present & ~integral
    values = numbers.where(integral).astype("Float64").astype("Int64")
    detail = f"{context.field.outreach} " + _preview(raw) + f" is not an integer ({context.field.workbooks})"
    return _StagedColumn(values, [_problems_where(context, invalid, detail, ErrorKind.INVALID_NUMBER)])


def _stage_boolean(context: _Context, raw: pd.Series) -> _StagedColumn:
    words = _clean_text(raw).str.lower()
    values = pd.Series(pd.NA, index=raw.index, dtype="boolean")
    values = values.mask(words.isin(TRUE_WORDS).fillna(False), True).mask(
        words.isin(FALSE_WORDS).fillna(False), False
    )
    invalid = words.notna() & values.isna()
    detail = f"{context.field.outreach} " + _preview(raw) + f" is not a boolean ({context.field.workbooks})"
    return _StagedColumn(values, [_problems_where(context, invalid, detail, ErrorKind.INVALID_BOOLEAN)])


def _parse_moments(raw: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Tz-aware UTC timestamps (NaT for blank or invalid) and the mask of present-but-invalid cells."""
    present = _present(raw)
    as_text = raw.where(present, None)
    if not isinstance(raw.dtype, pd.DatetimeTZDtype):
        as_text = as_text.astype("object")
    moments = pd.to_datetime(as_text, utc=True, errors="coerce", format="ISO8601")
    return moments, present & moments.isna()


def _stage_moment(context: _Context, raw: pd.Series, formatter: Callable, noun: str) -> _StagedColumn:
    moments, invalid = _parse_moments(raw)
    values = moments.map(formatter, na_action="ignore").astype("string")
    detail = (
        f"{context.field.outreach} " + _preview(raw) + f" is not a valid {noun} ({context.field.workbooks})"
    )
    return _StagedColumn(values, [_problems_where(context, invalid, detail, ErrorKind.INVALID_DATE)])


def _stage_date(context: _Context, raw: pd.Series) -> _StagedColumn:
    return _stage_moment(context, raw, format_wb_date, "date")


def _stage_datetime(context: _Context, raw: pd.Series) -> _StagedColumn:
    return _stage_moment(context, raw, format_wb_datetime, "date-time")


def _stage_currency(context: _Context, raw: pd.Series) -> _StagedColumn:
    transform = context.field.transform
    assert isinstance(transform, WbCurrencyTransform)
    present = _present(raw)
    amounts = pd.to_numeric(raw.where(present, None).astype("object"), errors="coerce")
    codes = _clean_text(
        _extracted_column(context, transform.currency_source)
    )
    codes = codes.str.upper()
    if transform.default_currency:
        codes = codes.fillna(transform.default_currency)
    bad_amount = present & amounts.isna()
    bad_code = present & ~bad_amount & ~codes.str.match(_CURRENCY_CODE_PATTERN).fillna(False)
    valid = present & ~bad_amount & ~bad_code
    formatted = [
        format_wb_currency(amount, code) for amount, code in zip(amounts[valid], codes[valid], strict=True)
    ]
    values = pd.Series(pd.NA, index=raw.index, dtype="string")
    values[valid] = formatted
    amount_detail = (
        f"{context.field.outreach} " + _preview(raw) + f" is not a number ({context.field.workbooks})"
    )
    code_detail = (
        f"{transform.currency_source} "
        + _preview(codes.fillna(""))
        + f" is not a currency code ({context.field.workbooks})"
    )
    return _StagedColumn(values, [
        _problems_where(context, bad_amount, amount_detail, ErrorKind.INVALID_NUMBER),
        _problems_where(context, bad_code, code_detail, ErrorKind.INVALID_CURRENCY),
    ])


def _stage_picklist(context: _Context, raw: pd.Series) -> _StagedColumn:
    transform = context.field.transform
    assert isinstance(transform, PicklistTransform)
    text = _clean_text(raw)
    mapped = text.map(transform.values)
    unmapped = text.notna() & mapped.isna()
    all_bool = all(isinstance(value, bool) for value in transform.values.values())
    values = mapped.astype("boolean" if all_bool else "string")
    if transform.unmapped == "blank":
        return _StagedColumn(values, _no_problems())
    allowed = ", ".join(sorted(transform.values))
    detail = (
        f"{context.field.outreach} "
        + _preview(raw)
        + f" is not in the picklist map of {context.field.workbooks} (allowed: {allowed})"
    )
    return _StagedColumn(values, [_problems_where(context, unmapped, detail, ErrorKind.NOT_IN_PICKLIST)])


def _stage_string_list(context: _Context, raw: pd.Series) -> _StagedColumn:
    def clean(cell: object) -> list[str | None]:
        items = cell if isinstance(cell, list | tuple) else []
        return [
            str(item).strip() or None if item is not None and not pd.isna(item) else None for item in items
        ]

    return _StagedColumn(raw.map(clean), _no_problems())


def _stage_int_list(context: _Context, raw: pd.Series) -> _StagedColumn:
    def to_ints(cell: object) -> list[int] | None:
        items = cell if isinstance(cell, list | tuple) else []
        try:
            return [int(item) for item in items]
        except (TypeError, ValueError):
            return None

    values = raw.map(to_ints)
    detail = f"{context.field.outreach} has a non-integer id ({context.field.workbooks})"
    return _StagedColumn(
        values.map(lambda cell: cell or []), [_problems_where(context, values.isna(), detail, ErrorKind.INVALID_ID)]
    )


# --- checks shared by all fields -------------------------------------------------------------------------


def _present(raw: pd.Series) -> pd.Series:
    """Cells holding a value: not NA and not a blank string."""
    as_text = raw.astype("string").str.strip()
    return (raw.notna() & as_text.ne("").fillna(True)).astype(bool)


def _required_problems(context: _Context, column: _StagedColumn) -> _Problems:
    values = column.values
    if values.dtype == object:
        blank = values.map(lambda cell: not cell if isinstance(cell, list) else pd.isna(cell)).astype(bool)
    else:
        blank = values.isna()
    detail = f"{context.field.workbooks} is blank (required)"
    return _problems_where(context, blank & column.valid(), detail, ErrorKind.REQUIRED)


def _duplicate_id_problems(ids: pd.Series, prefix: pd.Series) -> _Problems:
    counts = ids.map(ids.value_counts())
    duplicated = ids.duplicated(keep=False) & ids.notna()
    detail = "id appears " + counts.astype("string") + " times in this window (duplicate outreach id)"
    return _Problems(field=None, kind=ErrorKind.DUPLICATE, messages=(prefix + detail).where(duplicated, pd.NA))


def _collect_problems(problems: list[_Problems], index: pd.Index) -> pd.Series:
    """Per row, the list of error records across all problems, in field order."""
    if not problems:
        return pd.Series([[] for _ in index], index=index, dtype=object)
    table = pd.concat([p.messages.astype("string") for p in problems], axis=1, ignore_index=True)
    # Only invalid cells become records: (row, problem position) pairs of the non-NA messages.
    stacked = table.stack().dropna()
    records = [
        ValidationError(field=problems[position].field, kind=problems[position].kind, message=str(message)).as_record()
        for (_, position), message in stacked.items()
    ]
    grouped = pd.Series(records, index=stacked.index, dtype=object).groupby(level=0).agg(list).reindex(index)
    return grouped.map(lambda cell: cell if isinstance(cell, list) else []).astype(object)


def _link_key_values(frame: pd.DataFrame, entity: EntityMapping) -> pd.Series:
    keys = frame[entity.match.outreach_key].astype("Int64") if entity.match.outreach_key in frame else None
    if keys is None:
        raise KeyError(
            f"{entity.name}: extracted frame has no {entity.match.outreach_key!r} column (link key)"
        )
    if not entity.match.link_prefix:
        return keys
    return (entity.match.link_prefix + keys.astype("string")).astype("string")


def _updated_at(frame: pd.DataFrame) -> pd.Series:
    if "updatedAt" not in frame.columns:
        return pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns, UTC]")
    return pd.to_datetime(frame["updatedAt"], utc=True, errors="coerce", format="ISO8601")
