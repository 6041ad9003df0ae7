"""Field mappings as data (default.yaml), their pydantic models, and pure vectorised transforms."""

from outreach_pipeline.mapping.models import (
    EntityMapping,
    FieldMapping,
    MappingError,
    MappingSet,
    SourceRef,
    load_mapping_set,
)

__all__ = ["EntityMapping", "FieldMapping", "MappingError", "MappingSet", "SourceRef", "load_mapping_set"]
