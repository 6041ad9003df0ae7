"""Pydantic models for field mappings: the typed shape of ``default.yaml`` and of user overrides.

Every model forbids unknown keys, so a typo in a user's YAML is an error that names the key instead of a
setting that silently does nothing.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

DEFAULT_MAPPING_PATH = Path(__file__).with_name("default.yaml")

Direction = Literal["to_workbooks", "to_outreach", "both"]
#: Who wins a field changed on both sides since they last agreed (``latest_wins``: the record updated last,
#: Outreach on a tie, so the choice never depends on which direction runs first).
ConflictPolicy = Literal["outreach_wins", "workbooks_wins", "latest_wins"]
SourceKind = Literal["column", "element", "related", "collection"]

# `emails[0]`, `opportunityStage.name`, `opportunityProspectRole[opportunityId].prospectId`, or a plain column.
_ELEMENT_RE = re.compile(r"^(?P<column>[A-Za-z_][A-Za-z0-9_]*)\[(?P<index>\d+)\]$")
_RELATED_RE = re.compile(r"^(?P<relation>[A-Za-z_][A-Za-z0-9_]*)\.(?P<attribute>[A-Za-z_][A-Za-z0-9_]*)$")
_COLLECTION_RE = re.compile(
    r"^(?P<relation>[A-Za-z_][A-Za-z0-9_]*)\[(?P<key>[A-Za-z_][A-Za-z0-9_]*)\]\.(?P<attribute>[A-Za-z_][A-Za-z0-9_]*)$"
)
_COLUMN_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_OUTREACH_CUSTOM_FIELD_RE = re.compile(r"^custom\d+$")


class MappingError(ValueError):
    """A mapping file is invalid; the message names the file, the entity and the field."""


class StrictModel(BaseModel):
    """Base for all mapping models: unknown keys are errors and instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceRef(StrictModel):
    """A parsed Outreach source expression of a field mapping.

    Kinds:
        column: an attribute or a flattened to-one relationship id (``firstName``, ``accountId``).
        element: one element of an array attribute (``emails[0]``).
        related: an attribute of a to-one related record, read from a caller-supplied lookup frame
            (``opportunityStage.name`` reads ``opportunityStageId`` and the ``opportunityStage`` lookup).
        collection: every row of a lookup frame whose ``key`` column equals this record's id, as a list
            (``opportunityProspectRole[opportunityId].prospectId``).
    """

    kind: SourceKind
    column: str
    index: int | None = None
    relation: str | None = None
    attribute: str | None = None

    @classmethod
    def parse(cls, expression: str) -> SourceRef:
        """Parse a source expression; raises ValueError with the expression when it has no known form."""
        if match := _ELEMENT_RE.match(expression):
            return cls(kind="element", column=match["column"], index=int(match["index"]))
        if match := _COLLECTION_RE.match(expression):
            return cls(
                kind="collection",
                column=match["key"],
                relation=match["relation"],
                attribute=match["attribute"],
            )
        if match := _RELATED_RE.match(expression):
            relation = match["relation"]
            return cls(
                kind="related", column=f"{relation}Id", relation=relation, attribute=match["attribute"]
            )
        if _COLUMN_RE.match(expression):
            return cls(kind="column", column=expression)
        raise ValueError(
            f"outreach source {expression!r} is not an attribute, `array[index]`, `relation.attribute` "
            "or `relation[key].attribute`"
        )

    @property
    def is_custom_field(self) -> bool:
        """True for Outreach ``customN`` attributes, the only ones described by Outreach ``/types``."""
        return self.kind in {"column", "element"} and bool(_OUTREACH_CUSTOM_FIELD_RE.match(self.column))


class StringTransform(StrictModel):
    kind: Literal["string"] = "string"
    max_length: int | None = Field(default=None, gt=0)


class StringListTransform(StrictModel):
    """A list of strings, e.g. the roles aligned with a to-many link."""

    kind: Literal["string_list"] = "string_list"


class IntegerTransform(StrictModel):
    kind: Literal["integer"] = "integer"


class BooleanTransform(StrictModel):
    kind: Literal["boolean"] = "boolean"


class WbDateTransform(StrictModel):
    kind: Literal["wb_date"] = "wb_date"


class WbDateTimeTransform(StrictModel):
    kind: Literal["wb_datetime"] = "wb_datetime"


class WbCurrencyTransform(StrictModel):
    """Amount plus a currency code read from another Outreach column (``"100 GBP 0"``)."""

    kind: Literal["wb_currency"] = "wb_currency"
    currency_source: str
    default_currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")


class PicklistTransform(StrictModel):
    """Maps Outreach values to Workbooks picklist values.

    ``unmapped="error"`` makes an unknown value a validation error; ``"blank"`` turns it into None, which
    together with ``skip_blank`` on the field mapping means "leave the Workbooks value alone".
    """

    kind: Literal["picklist"] = "picklist"
    values: dict[str, str | bool] = Field(min_length=1)
    unmapped: Literal["error", "blank"] = "error"


class LinkTransform(StrictModel):
    """A reference to a record of another entity; staging carries the Outreach id, the planner resolves it."""

    kind: Literal["link"] = "link"
    entity: str
    many: bool = False


Transform = Annotated[
    StringTransform
    | StringListTransform
    | IntegerTransform
    | BooleanTransform
    | WbDateTransform
    | WbDateTimeTransform
    | WbCurrencyTransform
    | PicklistTransform
    | LinkTransform,
    Field(discriminator="kind"),
]


class FieldMapping(StrictModel):
    """One Outreach source mapped to one Workbooks field.

    Attributes:
        outreach: source expression (see SourceRef).
        workbooks: Workbooks API field name, e.g. ``main_location[email]``.
        direction: which sync direction writes this field.
        transform: how the value is converted (a bare kind string such as ``integer`` is accepted).
        required: a blank value is a validation error.
        skip_blank: a blank value never overwrites a non-blank one on the other side.
        conflict: who wins when both sides changed the field since they last agreed (direction ``both``).
        personal: personal data (an email address, a phone number): its values are masked wherever the sync
            reports values to Dagster (run metadata lives in Dagster's event store), unless a setting shows them.
    """

    outreach: str
    workbooks: str = Field(min_length=1)
    direction: Direction = "both"
    transform: Transform = Field(default_factory=StringTransform)
    required: bool = False
    skip_blank: bool = False
    conflict: ConflictPolicy = "latest_wins"
    personal: bool = False

    @field_validator("transform", mode="before")
    @classmethod
    def _expand_bare_kind(cls, value: Any) -> Any:
        return {"kind": value} if isinstance(value, str) else value

    @field_validator("outreach")
    @classmethod
    def _source_parses(cls, value: str) -> str:
        SourceRef.parse(value)
        return value

    @property
    def source(self) -> SourceRef:
        """The parsed source expression (parsed once per expression: the planner asks per record)."""
        return _parsed_source(self.outreach)

    @property
    def writes_workbooks(self) -> bool:
        """True when the Outreach -> Workbooks direction writes this field."""
        return self.direction in {"to_workbooks", "both"}

    @property
    def writes_outreach(self) -> bool:
        """True when the Workbooks -> Outreach direction writes this field."""
        return self.direction in {"to_outreach", "both"}


@functools.cache
def _parsed_source(expression: str) -> SourceRef:
    # SourceRef is frozen, so every field mapping with this expression can share one instance.
    return SourceRef.parse(expression)


class MatchKeys(StrictModel):
    """How an Outreach record finds its Workbooks twin.

    Attributes:
        link_key: Workbooks field holding the Outreach id (definitive match).
        outreach_key: Outreach column whose value goes into the link key (``prospectId`` when the Workbooks
            record belongs to another Outreach record, as for sequence states written onto people).
        link_prefix: prefix of the stored link value, for record types that share one link field
            (Outreach calls and tasks both become Workbooks tasks).
        natural_keys: Workbooks fields compared, all non-blank, when no record carries the link key.
        outreach_duplicate_filter: Outreach filter that finds every Outreach record holding the first natural
            key's value (``emails`` for prospects). Before an unlinked record is matched or created, Outreach is
            asked who else has its value, so records sharing it fail whichever window each is synced in.
    """

    link_key: str
    outreach_key: str = "id"
    link_prefix: str = ""
    natural_keys: list[str] = Field(default_factory=list)
    outreach_duplicate_filter: str | None = None


class SelectionFlags(StrictModel):
    """The Workbooks checkbox fields the integration owns on a record type."""

    sync_to_outreach: str
    sync_error: str
    sync_error_message: str
    duplicate: str | None = None


class RouteSpec(StrictModel):
    """Records of one Outreach entity that belong to another Workbooks controller, chosen by a value.

    ``{source: action, entities: {in_person: meetings}}`` sends tasks whose ``action`` is ``in_person`` through the
    ``meetings`` entity mapping (its own controller, link key, flags and fields); every other task stays with the
    mapping that declares the route. A routed-to mapping has no assets of its own: the declaring entity's assets
    extract, stage and load its rows, and the ledger records them under the routed-to entity's name.
    """

    source: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    entities: dict[str, str] = Field(min_length=1)


class EntityMapping(StrictModel):
    """Mapping of one Outreach type onto one Workbooks record type.

    Attributes:
        name: entity name used by assets and the ledger (``accounts``).
        outreach_type: Outreach JSON:API type (``account``).
        workbooks_controller: Workbooks controller path (``crm/organisations``).
        workbooks_record_type: Workbooks class name (``Private::Crm::Organisation``).
        match: link and natural keys.
        flags: selection-condition fields, None for record types without them.
        create: False when Outreach records only update existing Workbooks records.
        create_defaults: constant Workbooks values written on create (e.g. activity_type).
        fields: the field mappings.
        route: records sent to other entity mappings by the value of one Outreach attribute (see RouteSpec).
    """

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    outreach_type: str
    workbooks_controller: str
    workbooks_record_type: str
    match: MatchKeys
    flags: SelectionFlags | None = None
    create: bool = True
    create_defaults: dict[str, str | int | bool] = Field(default_factory=dict)
    fields: list[FieldMapping] = Field(min_length=1)
    route: RouteSpec | None = None
    # `field(name)` is asked per record and field by the planners: an index of `fields`, built on first use.
    _field_index: tuple[list[FieldMapping] | None, dict[str, FieldMapping]] = PrivateAttr(default=(None, {}))

    @model_validator(mode="after")
    def _consistent_fields(self) -> EntityMapping:
        seen: set[str] = set()
        for field in self.fields:
            if field.writes_workbooks and field.workbooks in seen:
                raise ValueError(f"Workbooks field {field.workbooks} is written by two field mappings")
            seen.add(field.workbooks)
        workbooks_fields = {field.workbooks for field in self.fields}
        missing = [key for key in self.match.natural_keys if key not in workbooks_fields]
        if missing:
            raise ValueError(f"natural key(s) {missing} are not mapped Workbooks fields")
        return self

    def personal_fields(self) -> frozenset[str]:
        """Names, on either side, of the fields holding personal data."""
        return frozenset(name for field in self.fields if field.personal for name in (field.outreach, field.workbooks))

    def to_workbooks_fields(self) -> list[FieldMapping]:
        """Field mappings written by the Outreach -> Workbooks direction, in file order."""
        return [field for field in self.fields if field.writes_workbooks]

    def to_outreach_fields(self) -> list[FieldMapping]:
        """Field mappings written by the Workbooks -> Outreach direction, in file order."""
        return [field for field in self.fields if field.writes_outreach]

    def field(self, workbooks_field: str) -> FieldMapping:
        """The field mapping that writes ``workbooks_field``; KeyError naming it when there is none."""
        fields, by_name = self._field_index
        if fields is not self.fields:  # first call, or a model_copy that replaced the fields
            by_name = {}
            for field in self.fields:
                by_name.setdefault(field.workbooks, field)  # the first one, as a scan in file order finds it
            self._field_index = (self.fields, by_name)
        try:
            return by_name[workbooks_field]
        except KeyError:
            raise KeyError(f"{self.name}: no field mapping writes {workbooks_field}") from None

    def flag_fields(self) -> list[str]:
        """Workbooks field names of the selection flags (empty without flags)."""
        if self.flags is None:
            return []
        names = [self.flags.sync_to_outreach, self.flags.sync_error, self.flags.sync_error_message]
        return [*names, self.flags.duplicate] if self.flags.duplicate else names


CustomFieldType = Literal["text", "integer", "boolean", "date", "datetime", "picklist", "currency"]


class CustomFieldSpec(StrictModel):
    """A Workbooks custom field the integration owns and the install step creates."""

    title: str
    api_name: str = Field(pattern=r"^cf_[a-z0-9_]+$")
    data_type: CustomFieldType
    picklist_options: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _options_only_for_picklists(self) -> CustomFieldSpec:
        if (self.data_type == "picklist") != bool(self.picklist_options):
            raise ValueError("picklist_options are required for, and only for, data_type picklist")
        return self


class MappingSet(StrictModel):
    """All entity mappings plus the custom fields they rely on, keyed by Workbooks record type."""

    version: Literal[1] = 1
    entities: dict[str, EntityMapping]
    custom_fields: dict[str, list[CustomFieldSpec]] = Field(default_factory=dict)
    # The file it was loaded from, so a problem found later (preflight) says which file to fix.
    _source: Path | None = PrivateAttr(default=None)

    @property
    def source_label(self) -> str:
        """The mapping file it was loaded from, or "the mapping file" for one built in code."""
        return str(self._source) if self._source is not None else "the mapping file"

    @model_validator(mode="before")
    @classmethod
    def _entity_names_from_keys(cls, data: Any) -> Any:
        # The YAML keys entities by name; copying the key in keeps one source of truth for the name.
        if isinstance(data, dict) and isinstance(data.get("entities"), dict):
            entities = {
                name: {"name": name, **body} if isinstance(body, dict) else body
                for name, body in data["entities"].items()
            }
            data = {**data, "entities": entities}
        return data

    @model_validator(mode="after")
    def _links_point_at_entities(self) -> MappingSet:
        for entity in self.entities.values():
            for field in entity.fields:
                target = getattr(field.transform, "entity", None)
                if target is not None and target not in self.entities:
                    raise ValueError(
                        f"entity {entity.name!r} field {field.workbooks!r}: link target entity "
                        f"{target!r} is not defined"
                    )
        return self

    @model_validator(mode="after")
    def _routes_point_at_entities(self) -> MappingSet:
        for entity in self.entities.values():
            if entity.route is None:
                continue
            for value, target in entity.route.entities.items():
                routed = self.entities.get(target)
                if routed is None or target == entity.name:
                    raise ValueError(f"entity {entity.name!r} route {value!r}: {target!r} is not another entity")
                if routed.outreach_type != entity.outreach_type or routed.route is not None:
                    raise ValueError(
                        f"entity {entity.name!r} route {value!r}: {target!r} must read the same Outreach type "
                        f"({entity.outreach_type}) and declare no route of its own"
                    )
        return self

    def route_entities(self, name: str) -> list[str]:
        """``name`` and the entities its route sends records to, in that order."""
        route = self.entity(name).route
        return [name, *dict.fromkeys(route.entities.values())] if route is not None else [name]

    def routed_targets(self) -> set[str]:
        """Entities that only receive records routed from another one (they have no assets of their own)."""
        return {target for entity in self.entities.values() if entity.route for target in entity.route.entities.values()}

    def entity(self, name: str) -> EntityMapping:
        """The entity mapping called ``name``; KeyError listing the known names otherwise."""
        try:
            return self.entities[name]
        except KeyError:
            raise KeyError(f"no entity mapping {name!r}; known: {sorted(self.entities)}") from None

    def iter_fields(self) -> Iterator[tuple[EntityMapping, FieldMapping]]:
        """Every (entity, field mapping) pair, in file order."""
        for entity in self.entities.values():
            for field in entity.fields:
                yield entity, field


def load_mapping_set(path: Path | None = None) -> MappingSet:
    """Load and validate a mapping YAML file.

    Args:
        path: YAML file; the packaged ``default.yaml`` when None.

    Returns:
        The validated MappingSet.

    Raises:
        MappingError: the file is missing, is not YAML, or fails validation; the message names the file and,
            for each problem, the entity and the field.
    """
    path = path or DEFAULT_MAPPING_PATH
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MappingError(f"{path}: cannot read mapping file: {exc}") from exc
    return _validated_mapping_set(path, text)


@functools.lru_cache(maxsize=8)
def _validated_mapping_set(path: Path, text: str) -> MappingSet:
    """The MappingSet of `text`, parsed and validated once per path and content.

    Every asset step asks for the mappings, and parsing plus validating the YAML costs about a tenth of a second
    of CPU each time; the set is immutable (frozen models), so one instance serves every step that reads the
    same file content, and an edited file (other text) is parsed afresh.
    """
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise MappingError(f"{path}: cannot read mapping file: {exc}") from exc
    try:
        mapping_set = MappingSet.model_validate(raw)
    except ValidationError as exc:
        problems = [_describe_error(raw, error) for error in exc.errors()]
        raise MappingError(f"{path}: invalid mapping:\n  " + "\n  ".join(problems)) from None
    mapping_set._source = path
    return mapping_set


def _describe_error(raw: Any, error: Any) -> str:
    """Turn a pydantic error location into 'entity X field Y: message (at a.b.c)'."""
    location = tuple(error["loc"])
    where: list[str] = []
    if len(location) >= 2 and location[0] == "entities":
        where.append(f"entity {location[1]!r}")
        if len(location) >= 4 and location[2] == "fields" and isinstance(location[3], int):
            where.append(f"field {_field_label(raw, location[1], location[3])}")
    elif len(location) >= 2 and location[0] == "custom_fields":
        where.append(f"custom fields of {location[1]!r}")
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        message = f"unknown key {location[-1]!r}"
    elif isinstance(error.get("input"), str | int | float | bool):
        message = f"{message}, got {error['input']!r}"
    path = ".".join(str(part) for part in location)
    prefix = " ".join(where)
    return f"{prefix}: {message} (at {path})" if prefix else f"{message} (at {path})"


def _field_label(raw: Any, entity_name: Any, index: int) -> str:
    """A field's 'outreach -> workbooks' label from the raw YAML, or its index when unreadable."""
    try:
        body = raw["entities"][entity_name]["fields"][index]
        return f"#{index} ({body.get('outreach')} -> {body.get('workbooks')})"
    except (KeyError, IndexError, TypeError, AttributeError):
        return f"#{index}"
