"""How the asset graph reads in the UI: groups named by key prefix with their descriptions, and the field
mapping on the assets that apply it.

`present_assets` is the last step of building the code location's assets: it leaves what runs untouched and
only adds text the open-source UI shows (descriptions and definition metadata, see `defs.groups` and
`defs.mapping_table` for the rules).
"""

from __future__ import annotations

import dagster as dg

from outreach_pipeline.defs.assets import FLOWS
from outreach_pipeline.defs.assets_outreach import REVERSE_FLOWS
from outreach_pipeline.defs.groups import describe_group
from outreach_pipeline.defs.mapping_table import mapping_markdown, mapping_metadata
from outreach_pipeline.mapping.models import MappingSet

#: Definition metadata key of the field-mapping table.
MAPPING_METADATA_KEY = "mapping"


def mapped_entities() -> dict[dg.AssetKey, str]:
    """The assets that apply a field mapping, and the mapping's entity: each staged asset (Outreach ->
    Workbooks) and each write to Outreach (Workbooks -> Outreach)."""
    return {**{flow.staged_key: flow.entity for flow in FLOWS},
            **{flow.write_key: flow.entity for flow in REVERSE_FLOWS}}


def present_assets(assets: list[dg.AssetsDefinition], mappings: MappingSet) -> list[dg.AssetsDefinition]:
    """`assets` with each one's description ending with its group's, and the mapping table on the assets that
    apply a mapping. (Each decorator names its group, `defs.groups.Group`, after its key prefix.)"""
    entities = mapped_entities()

    def present(spec: dg.AssetSpec) -> dg.AssetSpec:
        description = spec.description or ""
        metadata = dict(spec.metadata)
        if (entity := entities.get(spec.key)) is not None:
            description = f"{description.rstrip()}\n\n{mapping_markdown(mappings, entity)}"
            metadata[MAPPING_METADATA_KEY] = mapping_metadata(mappings, entity)
        return spec.replace_attributes(description=describe_group(description, spec.key), metadata=metadata)

    return [asset.map_asset_specs(present) for asset in assets]
