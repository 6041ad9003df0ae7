"""The Outreach OAuth scopes a mapping needs, derived from its entities and field directions (pure).

Outreach scopes are ``<pluralResource>.<read|write|delete|all>`` and are not additive: ``prospects.write``
grants no reads, ``prospects.all`` grants everything on prospects. A mapping needs the read scope of every
Outreach resource it reads (the entity's own type, and the related types its sources name, such as
``opportunityStage`` in ``opportunityStage.name``), and the write scope only of the types where some field is
written to Outreach (direction ``both`` or ``to_outreach``). Nothing here deletes, so no delete scope is
asked for.
"""

from __future__ import annotations

from collections.abc import Iterable

from outreach_pipeline.mapping.models import EntityMapping, MappingSet

ALL_ACTION = "all"


def plural(outreach_type: str) -> str:
    """The API collection of an Outreach type (``opportunity`` -> ``opportunities``)."""
    if outreach_type.endswith("y") and outreach_type[-2:-1] not in "aeiou":
        return outreach_type[:-1] + "ies"
    return outreach_type + "s"


def _related_types(entity: EntityMapping) -> set[str]:
    types = {field.source.relation for field in entity.fields if field.writes_workbooks and field.source.relation}
    return {name for name in types if name}


def entity_scopes(entity: EntityMapping) -> set[str]:
    """The scopes one entity mapping needs."""
    scopes: set[str] = set()
    if any(field.writes_workbooks for field in entity.fields):
        scopes.add(f"{plural(entity.outreach_type)}.read")
        scopes |= {f"{plural(name)}.read" for name in _related_types(entity)}
    if any(field.direction in ("both", "to_outreach") for field in entity.fields):
        scopes.add(f"{plural(entity.outreach_type)}.write")
    return scopes


def required_scopes(mappings: MappingSet, entities: Iterable[str] | None = None) -> list[str]:
    """The sorted scopes the mapping's entities (default: all of them) need."""
    names = list(entities) if entities is not None else list(mappings.entities)
    return sorted(set().union(*(entity_scopes(mappings.entity(name)) for name in names)))


def scope_granted(granted: Iterable[str], needed: str) -> bool:
    """Whether `granted` covers `needed`: the exact scope, or the resource's ``.all``."""
    resource = needed.split(".", 1)[0]
    held = set(granted)
    return needed in held or f"{resource}.{ALL_ACTION}" in held


def missing_scopes(required: Iterable[str], granted: Iterable[str]) -> list[str]:
    """The required scopes `granted` does not cover, sorted."""
    held = list(granted)
    return sorted(scope for scope in set(required) if not scope_granted(held, scope))
