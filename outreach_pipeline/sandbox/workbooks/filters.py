"""Workbooks read filters (`_ff[]`/`_ft[]`/`_fc[]`, `_filter_json`, `_fm`) translated to SQL.

`_fm` is `and`, `or`, or a boolean expression over 1-based filter numbers with `NOT`/`!`, `AND`,
`OR`, `XOR` and parentheses. It is parsed by a small recursive-descent parser (precedence
NOT > AND > XOR > OR), never evaluated as code.

Null handling: a leaf such as `x gt 5` is NULL in SQL when `x` is NULL. `WHERE` already treats
that as false, so leaves stay plain (and index-friendly); only negation needs care, so `NOT e`
is rendered as `e IS NOT 1`, which is true for both false and NULL. The negative operators
(`ne`, `nct`, `nbg`, `not_between`, `false`) count a blank value as "not matching" the criteria.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from outreach_pipeline.sandbox.workbooks.schema import DataType, FieldSpec
from outreach_pipeline.sandbox.workbooks.values import (
    FieldValueError,
    currency_amount,
    parse_currency,
    parse_value,
)

VALUELESS_OPERATORS = frozenset(
    {"blank", "not_blank", "true", "false", "today", "ge_today", "gt_today", "le_today", "lt_today"}
)
COMPARISON_OPERATORS = {"gt": "__gt__", "ge": "__ge__", "lt": "__lt__", "le": "__le__"}
TODAY_OPERATORS = frozenset({"today", "ge_today", "gt_today", "le_today", "lt_today"})
ALL_OPERATORS = frozenset(
    {
        "eq",
        "ne",
        "bg",
        "nbg",
        "ct",
        "nct",
        "between",
        "not_between",
        *COMPARISON_OPERATORS,
        *VALUELESS_OPERATORS,
    }
)


class FilterError(ValueError):
    """A filter that cannot be applied; the message names the filter and the field."""


@dataclass(frozen=True)
class FilterSpec:
    """One `[field, type, criteria]` filter as sent by the client."""

    field: str
    operator: str
    criteria: str


def filters_from_arrays(
    fields: Sequence[str], operators: Sequence[str], criteria: Sequence[str]
) -> list[FilterSpec]:
    """Zip the parallel `_ff[]`/`_ft[]`/`_fc[]` arrays, rejecting arrays of different lengths."""
    if not (len(fields) == len(operators) == len(criteria)):
        raise FilterError(
            f"_ff[], _ft[] and _fc[] must have the same number of entries "
            f"(got {len(fields)}, {len(operators)} and {len(criteria)}); value-less types still need an _fc[]"
        )
    return [FilterSpec(f, o, c) for f, o, c in zip(fields, operators, criteria, strict=True)]


def filters_from_json(text: str) -> list[FilterSpec]:
    """Parse `_filter_json`: a JSON array of `[field, type, criteria]` triples."""
    try:
        triples = json.loads(text)
    except json.JSONDecodeError as error:
        raise FilterError(f"_filter_json is not valid JSON: {error.msg}") from error
    if not isinstance(triples, list) or not all(isinstance(t, list) and len(t) in (2, 3) for t in triples):
        raise FilterError("_filter_json must be a JSON array of [field, type, criteria] arrays")
    return [
        FilterSpec(str(t[0]), str(t[1]), "" if len(t) < 3 or t[2] is None else str(t[2])) for t in triples
    ]


def split_eq_list(criteria: str) -> list[str]:
    r"""Split `a,b\,c` into `["a", "b,c"]` (a backslash escapes a literal comma)."""
    parts = re.split(r"(?<!\\),", criteria)
    return [part.replace("\\,", ",") for part in parts]


# ---------------------------------------------------------------- _fm expressions


_TOKEN_PATTERN = re.compile(r"\s*(?:(\d+)|(\()|(\))|(!)|([A-Za-z]+))")


@dataclass(frozen=True)
class FilterRef:
    number: int


@dataclass(frozen=True)
class Not:
    operand: Expression


@dataclass(frozen=True)
class BinaryOp:
    operator: str  # AND, OR, XOR
    left: Expression
    right: Expression


Expression = FilterRef | Not | BinaryOp


def _tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN_PATTERN.match(text, position)
        if not match:
            raise FilterError(
                f"_fm: unexpected character {text[position:].strip()[0]!r} at position {position + 1}"
            )
        token = next(group for group in match.groups() if group is not None)
        tokens.append(token.upper() if token.isalpha() else token)
        position = match.end()
    return tokens


class _ExpressionParser:
    def __init__(self, text: str, filter_count: int) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.position = 0
        self.filter_count = filter_count

    def parse(self) -> Expression:
        if not self.tokens:
            raise FilterError("_fm is empty")
        expression = self._binary(("OR",), self._xor)
        if self.position < len(self.tokens):
            raise FilterError(f"_fm {self.text!r}: unexpected {self.tokens[self.position]!r}")
        return expression

    def _peek(self) -> str | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def _take(self) -> str:
        token = self._peek()
        if token is None:
            raise FilterError(f"_fm {self.text!r} ends unexpectedly")
        self.position += 1
        return token

    def _binary(self, operators: tuple[str, ...], operand: Callable[[], Expression]) -> Expression:
        left = operand()
        while self._peek() in operators:
            operator = self._take()
            left = BinaryOp(operator, left, operand())
        return left

    def _xor(self) -> Expression:
        return self._binary(("XOR",), self._and)

    def _and(self) -> Expression:
        return self._binary(("AND",), self._unary)

    def _unary(self) -> Expression:
        token = self._take()
        if token in ("NOT", "!"):
            return Not(self._unary())
        if token == "(":
            inner = self._binary(("OR",), self._xor)
            if self._peek() != ")":
                raise FilterError(f"_fm {self.text!r}: missing ')'")
            self._take()
            return inner
        if token.isdigit():
            number = int(token)
            if not 1 <= number <= self.filter_count:
                raise FilterError(
                    f"_fm {self.text!r} refers to filter {number}, but {self.filter_count} filters were sent"
                )
            return FilterRef(number)
        raise FilterError(f"_fm {self.text!r}: unexpected {token!r}")


def parse_filter_expression(text: str | None, filter_count: int) -> Expression | None:
    """Parse `_fm` into an expression tree (`None` when there are no filters).

    Args:
        text: the `_fm` value; `None`/`and` joins all filters with AND, `or` with OR.
        filter_count: how many filters were sent.

    Raises:
        FilterError: the expression is malformed or names a filter that was not sent.
    """
    if filter_count == 0:
        return None
    mode = (text or "and").strip()
    if mode.lower() in ("and", "or"):
        refs: list[Expression] = [FilterRef(n) for n in range(1, filter_count + 1)]
        expression = refs[0]
        for ref in refs[1:]:
            expression = BinaryOp(mode.upper(), expression, ref)
        return expression
    return _ExpressionParser(mode, filter_count).parse()


def negate(clause: ColumnElement[bool]) -> ColumnElement[bool]:
    """NULL-safe NOT: true when `clause` is false or NULL."""
    return clause.is_not(sa.true())


def expression_to_sql(expression: Expression, leaves: Sequence[ColumnElement[bool]]) -> ColumnElement[bool]:
    """Render an `_fm` tree over already-built leaf clauses (leaf n is `leaves[n - 1]`)."""
    match expression:
        case FilterRef(number):
            return leaves[number - 1]
        case Not(operand):
            return negate(expression_to_sql(operand, leaves))
        case BinaryOp("AND", left, right):
            return sa.and_(expression_to_sql(left, leaves), expression_to_sql(right, leaves))
        case BinaryOp("OR", left, right):
            return sa.or_(expression_to_sql(left, leaves), expression_to_sql(right, leaves))
        case BinaryOp(_, left, right):
            left_sql, right_sql = expression_to_sql(left, leaves), expression_to_sql(right, leaves)
            return sa.or_(sa.and_(left_sql, negate(right_sql)), sa.and_(negate(left_sql), right_sql))
    raise FilterError(f"unsupported expression {expression!r}")


# ---------------------------------------------------------------- leaves


@dataclass(frozen=True)
class FilterContext:
    """What a leaf needs besides the filter: the column for a field and today's date."""

    column_for: Callable[[str], tuple[ColumnElement, FieldSpec]]
    today: date


def _operand(column: ColumnElement, field: FieldSpec) -> tuple[ColumnElement, Callable[[str], object]]:
    """The SQL expression a criterion is compared with, and how to convert the criterion."""
    if field.datatype is DataType.CURRENCY:
        amount = sa.cast(sa.func.substr(column, 1, sa.func.instr(column, " ") - 1), sa.Float)
        return amount, lambda raw: currency_amount(parse_currency(raw))
    if field.datatype is DataType.BOOLEAN:
        return column, lambda raw: raw.strip() not in ("0", "", "false", "f")
    if field.datatype in (DataType.STRING, DataType.TEXT, DataType.PICKLIST, DataType.ARRAY):
        return column, lambda raw: raw
    return column, lambda raw: parse_value(raw, field)


def _like_pattern(text: str, *, prefix: bool) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"{escaped}%" if prefix else f"%{escaped}%"


def _is_blank(column: ColumnElement, field: FieldSpec) -> ColumnElement[bool]:
    if field.datatype in (DataType.STRING, DataType.TEXT, DataType.PICKLIST, DataType.ARRAY):
        return sa.or_(column.is_(None), column == "")
    return column.is_(None)


def _today_clause(operator: str, column: ColumnElement, field: FieldSpec, today: date) -> ColumnElement[bool]:
    if field.datatype is DataType.DATETIME:
        start: object = datetime.combine(today, time.min)
        next_start: object = datetime.combine(today + timedelta(days=1), time.min)
    elif field.datatype is DataType.DATE:
        start, next_start = today, today + timedelta(days=1)
    else:
        raise FilterError(f"'{operator}' needs a date or datetime field")
    clauses = {
        "today": sa.and_(column >= start, column < next_start),
        "ge_today": column >= start,
        "gt_today": column >= next_start,
        "le_today": column < next_start,
        "lt_today": column < start,
    }
    return clauses[operator]


def _between_bounds(criteria: str, convert: Callable[[str], object]) -> tuple[object, object]:
    try:
        bounds = json.loads(criteria)
    except json.JSONDecodeError as error:
        raise FilterError(f"criteria {criteria!r} must be a JSON array [from, to]") from error
    if not isinstance(bounds, list) or len(bounds) != 2:
        raise FilterError(f"criteria {criteria!r} must be a JSON array [from, to]")
    return convert(str(bounds[0])), convert(str(bounds[1]))


def _value_clause(spec: FilterSpec, column: ColumnElement, field: FieldSpec) -> ColumnElement[bool]:
    operand, convert = _operand(column, field)
    operator, criteria = spec.operator, spec.criteria
    if operator in ("eq", "ne"):
        values = [convert(value) for value in split_eq_list(criteria)]
        matches = operand == values[0] if len(values) == 1 else operand.in_(values)
        return matches if operator == "eq" else sa.or_(column.is_(None), sa.not_(matches))
    if operator in COMPARISON_OPERATORS:
        return getattr(operand, COMPARISON_OPERATORS[operator])(convert(criteria))
    if operator in ("bg", "nbg", "ct", "nct"):
        like = column.like(_like_pattern(criteria, prefix=operator in ("bg", "nbg")), escape="\\")
        return like if operator in ("bg", "ct") else sa.or_(column.is_(None), sa.not_(like))
    low, high = _between_bounds(criteria, convert)
    inside = operand.between(low, high)
    return inside if operator == "between" else sa.or_(column.is_(None), sa.not_(inside))


def _valueless_clause(
    operator: str, column: ColumnElement, field: FieldSpec, today: date
) -> ColumnElement[bool]:
    if operator == "blank":
        return _is_blank(column, field)
    if operator == "not_blank":
        return sa.not_(_is_blank(column, field))
    if operator in ("true", "false"):
        if field.datatype is not DataType.BOOLEAN:
            raise FilterError(f"'{operator}' needs a boolean field")
        return column.is_(True) if operator == "true" else sa.or_(column.is_(None), column.is_(False))
    return _today_clause(operator, column, field, today)


def leaf_clause(number: int, spec: FilterSpec, context: FilterContext) -> ColumnElement[bool]:
    """Build the SQL for filter number `number` (1-based, used in error messages).

    Raises:
        FilterError: unknown field or operator, or criteria that do not fit the field's type.
    """
    label = f"filter {number} ({spec.field} {spec.operator} {spec.criteria!r})"
    if spec.operator not in ALL_OPERATORS:
        raise FilterError(
            f"{label}: unknown filter type '{spec.operator}' (allowed: {', '.join(sorted(ALL_OPERATORS))})"
        )
    column, field = context.column_for(spec.field)
    try:
        if spec.operator in VALUELESS_OPERATORS:
            return _valueless_clause(spec.operator, column, field, context.today)
        return _value_clause(spec, column, field)
    except (FilterError, FieldValueError, ValueError) as error:
        raise FilterError(f"{label}: {error}") from error


# ---------------------------------------------------------------- working set of a batch write


def evaluate_expression(expression: Expression, leaf_values: Sequence[bool]) -> bool:
    """Evaluate an `_fm` tree in Python over known leaf results (leaf n is `leaf_values[n - 1]`)."""
    match expression:
        case FilterRef(number):
            return leaf_values[number - 1]
        case Not(operand):
            return not evaluate_expression(operand, leaf_values)
        case BinaryOp(operator, left, right):
            left_value = evaluate_expression(left, leaf_values)
            right_value = evaluate_expression(right, leaf_values)
            if operator == "AND":
                return left_value and right_value
            if operator == "OR":
                return left_value or right_value
            return left_value != right_value
    raise FilterError(f"unsupported expression {expression!r}")


def _id_leaf_matches(number: int, spec: FilterSpec, record_id: int) -> bool:
    if spec.field != "id" or spec.operator not in ("eq", "ne"):
        raise FilterError(
            f"filter {number} ({spec.field} {spec.operator}): a write selects its working set with "
            "'id eq' filters only (id eq 0 for creates)"
        )
    try:
        ids = {int(value) for value in split_eq_list(spec.criteria)}
    except ValueError as error:
        raise FilterError(
            f"filter {number} (id {spec.operator} {spec.criteria!r}): ids must be integers"
        ) from error
    return (record_id in ids) == (spec.operator == "eq")


def unselected_ids(
    filters: Sequence[FilterSpec], filter_mode: str | None, working_set: Iterable[int]
) -> list[int]:
    """Ids of the working set (0 stands for creates) that the request's filter does not select.

    Raises:
        FilterError: the filter is missing, malformed, or filters on something other than id.
    """
    expression = parse_filter_expression(filter_mode, len(filters))
    if expression is None:
        raise FilterError(
            "a write needs a filter selecting its working set: _ff[]=id&_ft[]=eq&_fc[]=0 for creates, "
            "and _fm=or with one 'id eq <id>' filter per updated or deleted record"
        )
    missing = []
    for record_id in working_set:
        leaves = [_id_leaf_matches(n, f, record_id) for n, f in enumerate(filters, start=1)]
        if not evaluate_expression(expression, leaves):
            missing.append(record_id)
    return missing
