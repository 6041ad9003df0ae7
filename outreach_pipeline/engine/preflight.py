"""Preflight runner: fetch both live schemas and check a mapping set against them before any write.

The checks themselves are the pure ``outreach_pipeline.mapping.preflight.preflight``; this module only
decides which entities are checked and fetches what they need over HTTP.

Where Outreach's schema comes from: the service's own ``GET /api/v2/schema/openapi.json``, the document
Outreach names in its API description as the machine-readable definition, so the check follows the API the
org is actually served (attributes added or retired since this package was built included). When a service
does not serve it (404, or a body that is not an OpenAPI document), the copy shipped in the package is used
(the schema's ``source`` says which): standard attributes change rarely, and a check against the shipped copy
still catches a misspelt source. Custom fields come from ``GET /api/v2/types`` in both cases: the
OpenAPI document lists custom1..custom150 for every org, only ``/types`` says which are configured.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from outreach_pipeline.clients.http import ApiError, MalformedResponse, NotFoundError
from outreach_pipeline.clients.outreach import OutreachClient
from outreach_pipeline.clients.outreach_schema import OutreachSchema, packaged_schema
from outreach_pipeline.clients.workbooks import WorkbooksClient
from outreach_pipeline.engine.install import normalise_data_type
from outreach_pipeline.mapping.models import EntityMapping, MappingSet
from outreach_pipeline.mapping.preflight import preflight
from outreach_pipeline.mapping.scopes import missing_scopes, required_scopes

SCHEMA_NOT_SERVED_STATUSES = frozenset({403, 406})
"""Answers to the schema request that mean "not served to us", besides 404 and an unreadable body."""

OUTREACH_TO_WORKBOOKS_CORE_ENTITIES = ("accounts", "prospects", "opportunities")
"""The entities whose Outreach -> Workbooks sync the install command checks by default."""


def select_entities(mapping_set: MappingSet, entities: Iterable[str] | None) -> MappingSet:
    """The mapping set restricted to ``entities`` (all of them when None).

    Raises:
        KeyError: An entity name the mapping set does not define; the message lists the known names.
    """
    if entities is None:
        return mapping_set
    chosen = {name: mapping_set.entity(name) for name in entities}
    # model_copy skips validation on purpose: a subset may link to entities left out (prospects link to
    # accounts), which the whole set has already proven to exist.
    return mapping_set.model_copy(update={"entities": chosen})


def fetch_workbooks_types(workbooks: WorkbooksClient, mapping_set: MappingSet) -> list[dict[str, Any]]:
    """Workbooks ``metadata/types`` entries of the record types the mapping set's entities use."""
    record_types = sorted({entity.workbooks_record_type for entity in mapping_set.entities.values()})
    return workbooks.metadata_types(record_types)


def fetch_outreach_types(outreach: OutreachClient) -> list[dict[str, Any]]:
    """The ``data`` of Outreach ``GET /api/v2/types`` (custom-field validations per object type)."""
    return outreach.get_custom_field_types()


def fetch_outreach_schema(outreach: OutreachClient) -> OutreachSchema:
    """Outreach's schema from the service, or the packaged copy when the service does not serve one.

    Only a document that is missing, withheld from this token (403), not offered as JSON (406) or unreadable
    falls back; a service that is down or a token it rejects raises, as every other preflight request would
    (``/types`` is asked first, with the same token).
    """
    try:
        return outreach.get_schema()
    except ApiError as exc:
        if not isinstance(exc, NotFoundError | MalformedResponse) and exc.status not in SCHEMA_NOT_SERVED_STATUSES:
            raise
        fallback = packaged_schema()
        return fallback.model_copy(update={"source": f"{fallback.source} ({exc.path} not served: {exc.status or exc})"})


def run_preflight(
    workbooks: WorkbooksClient,
    outreach: OutreachClient,
    mapping_set: MappingSet,
    entities: Iterable[str] | None = None,
) -> list[str]:
    """Check the mapping of ``entities`` against the live Workbooks and Outreach schemas.

    Args:
        workbooks: Client for the Workbooks database the sync writes to.
        outreach: Client for the Outreach org the sync reads from.
        mapping_set: The mappings to check.
        entities: Entity names to check; every entity of the mapping set when None.

    Returns:
        One message per problem, naming the entity and each unknown, missing or mistyped field; an
        empty list means the mapping can be used.

    Raises:
        KeyError: An entity name the mapping set does not define.
        ApiError: Either schema could not be fetched.
    """
    return [*workbooks_preflight(workbooks, mapping_set, entities), *outreach_preflight(outreach, mapping_set, entities)]


def workbooks_preflight(
    workbooks: WorkbooksClient, mapping_set: MappingSet, entities: Iterable[str] | None = None
) -> list[str]:
    """The Workbooks half of :func:`run_preflight`: only Workbooks is called."""
    selected = select_entities(mapping_set, entities)
    workbooks_types = fetch_workbooks_types(workbooks, selected)
    return [*preflight(selected, workbooks_types, None), *owned_field_problems(selected, workbooks_types)]


def outreach_preflight(
    outreach: OutreachClient, mapping_set: MappingSet, entities: Iterable[str] | None = None
) -> list[str]:
    """The Outreach half of :func:`run_preflight`: only Outreach is called (the grant's scopes, the schema
    of its types, attributes and relationships, and its custom fields)."""
    selected = select_entities(mapping_set, entities)
    return [
        *scope_problems(outreach, selected),
        *preflight(selected, None, fetch_outreach_types(outreach), fetch_outreach_schema(outreach)),
    ]


def scope_problems(outreach: OutreachClient, mapping_set: MappingSet) -> list[str]:
    """One message per scope the mapping needs that the connected account's grant lacks.

    The grant's scopes come from Outreach's token response; when it named none, there is nothing to
    compare and a missing scope shows as a 403 naming it at run time instead.
    """
    granted = outreach.granted_scopes()
    if granted is None:
        return []
    return [
        f"Outreach: the connected account was not granted scope {scope}, which the mapping needs; run "
        "`outreach-pipeline auth connect` to grant it"
        for scope in missing_scopes(required_scopes(mapping_set), granted)
    ]


def owned_field_problems(mapping_set: MappingSet, workbooks_types: list[dict[str, Any]]) -> list[str]:
    """Integration-owned custom fields whose Workbooks datatype differs from ``custom_fields``.

    The pure preflight only checks that the link key and flags exist; a link key created by hand as text
    where the mapping declares an integer would pass it and then break matching, so the declared type is
    compared here as well. Missing fields are left to the pure preflight, which already names them.
    """
    described = {
        entry.get("class_name"): {field.get("name"): field for field in entry.get("fields") or []}
        for entry in workbooks_types
    }
    problems: list[str] = []
    for entity in mapping_set.entities.values():
        fields = described.get(entity.workbooks_record_type) or {}
        for spec in mapping_set.custom_fields.get(entity.workbooks_record_type, []):
            field = fields.get(spec.api_name)
            if field is None or spec.api_name not in _names_used(entity):
                continue
            actual = normalise_data_type(field.get("datatype"))
            if actual != spec.data_type:
                problems.append(
                    f"{entity.name}: Workbooks field {spec.api_name} has datatype {actual or '(none)'!r}, but "
                    f"the mapping's custom_fields declares {spec.data_type!r} for it"
                )
    return problems


def _names_used(entity: EntityMapping) -> set[str]:
    return {entity.match.link_key, *entity.flag_fields(), *(field.workbooks for field in entity.fields)}
