"""Mapping YAML validation: the default file loads, and bad user files fail naming the file, entity and field."""

from pathlib import Path

import pytest
import yaml

from outreach_pipeline.mapping import MappingError, SourceRef, load_mapping_set
from outreach_pipeline.mapping.models import DEFAULT_MAPPING_PATH
from outreach_pipeline.mapping.personal import MASK, mask_personal


def test_default_mapping_covers_the_entities() -> None:
    mapping = load_mapping_set()
    assert set(mapping.entities) >= {"accounts", "prospects", "opportunities", "tasks", "calls", "sequences"}
    prospects = mapping.entity("prospects")
    assert prospects.workbooks_controller == "crm/people"
    assert prospects.match.natural_keys == ["main_location[email]"]
    assert prospects.field("employer_link").transform.entity == "accounts"
    assert mapping.entity("accounts").match.natural_keys == ["name", "website"]
    assert mapping.entity("opportunities").match.natural_keys == []
    person_fields = {spec.api_name for spec in mapping.custom_fields["Private::Crm::Person"]}
    assert {
        "cf_person_outreach_id",
        "cf_person_outreach_duplicate",
        "cf_person_outreach_sequence_step",
    } <= person_fields


def _write_with(tmp_path: Path, mutate) -> Path:
    raw = yaml.safe_load(DEFAULT_MAPPING_PATH.read_text())
    mutate(raw)
    path = tmp_path / "mapping.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _first_name(raw: dict) -> dict:
    return raw["entities"]["prospects"]["fields"][0]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda raw: _first_name(raw).update(colour="red"),
            ["entity 'prospects'", "firstName -> person_first_name", "unknown key 'colour'"],
        ),
        (
            lambda raw: _first_name(raw).update(transform={"kind": "uppercase"}),
            ["entity 'prospects'", "person_first_name", "uppercase"],
        ),
        (
            lambda raw: _first_name(raw).update(direction="sideways"),
            ["entity 'prospects'", "person_first_name", "sideways"],
        ),
        (
            lambda raw: _first_name(raw).update(transform={"kind": "string", "max_length": -1}),
            ["person_first_name", "max_length"],
        ),
        (lambda raw: _first_name(raw).update(outreach="emails[x"), ["person_first_name", "emails[x"]),
        (
            lambda raw: raw["entities"]["accounts"].update(colour="red"),
            ["entity 'accounts'", "unknown key 'colour'"],
        ),
        (
            lambda raw: raw["entities"]["prospects"]["fields"][18]["transform"].update(entity="nowhere"),
            ["prospects", "employer_link", "nowhere"],
        ),
        (
            lambda raw: raw["entities"]["accounts"]["match"].update(natural_keys=["name", "web"]),
            ["entity 'accounts'", "web"],
        ),
        (
            lambda raw: raw["custom_fields"]["Private::Crm::Person"][0].update(data_type="blob"),
            ["custom fields of 'Private::Crm::Person'", "blob"],
        ),
    ],
    ids=[
        "unknown-field-key",
        "bad-transform",
        "bad-direction",
        "bad-max-length",
        "bad-source",
        "unknown-entity-key",
        "link-target",
        "natural-key",
        "custom-field-type",
    ],
)
def test_invalid_mapping_names_file_entity_and_field(tmp_path: Path, mutate, expected: list[str]) -> None:
    path = _write_with(tmp_path, mutate)
    with pytest.raises(MappingError) as error:
        load_mapping_set(path)
    message = str(error.value)
    assert str(path) in message
    for fragment in expected:
        assert fragment in message


def test_unreadable_yaml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("entities: [unclosed")
    with pytest.raises(MappingError, match=r"broken\.yaml"):
        load_mapping_set(path)


def test_a_mapping_file_edited_between_loads_is_read_afresh(tmp_path: Path) -> None:
    # Loads are cached by path and content: the same content gives the same (immutable) set, an edit a new one.
    path = _write_with(tmp_path, lambda raw: None)
    first = load_mapping_set(path)
    assert load_mapping_set(path) is first
    path = _write_with(tmp_path, lambda raw: _first_name(raw).update(required=True))
    edited = load_mapping_set(path)
    assert edited is not first
    assert edited.entity("prospects").fields[0].required and not first.entity("prospects").fields[0].required
    path.write_text("entities: [unclosed")
    with pytest.raises(MappingError, match=r"mapping\.yaml"):
        load_mapping_set(path)


@pytest.mark.parametrize(
    ("expression", "kind", "column", "relation", "attribute", "index"),
    [
        ("firstName", "column", "firstName", None, None, None),
        ("accountId", "column", "accountId", None, None, None),
        ("emails[1]", "element", "emails", None, None, 1),
        ("opportunityStage.name", "related", "opportunityStageId", "opportunityStage", "name", None),
        (
            "opportunityProspectRole[opportunityId].role",
            "collection",
            "opportunityId",
            "opportunityProspectRole",
            "role",
            None,
        ),
    ],
)
def test_source_expressions_parse(expression, kind, column, relation, attribute, index) -> None:
    source = SourceRef.parse(expression)
    assert (source.kind, source.column, source.relation, source.attribute, source.index) == (
        kind,
        column,
        relation,
        attribute,
        index,
    )


def test_custom_field_detection() -> None:
    assert SourceRef.parse("custom12").is_custom_field
    assert not SourceRef.parse("customId").is_custom_field


def test_the_default_mapping_marks_emails_and_phones_personal_and_masking_hides_only_their_values() -> None:
    prospects = load_mapping_set().entity("prospects")
    assert prospects.personal_fields() == {
        "emails[0]", "main_location[email]", "emails[1]", "main_location[alternate_email]",
        "workPhones[0]", "main_location[telephone]", "mobilePhones[0]", "main_location[mobile]",
    }
    changes = {"main_location[email]": "ada@example.com", "main_location[mobile]": None,
               "person_first_name": "Ada"}
    assert mask_personal(changes, prospects.personal_fields()) == {
        "main_location[email]": MASK, "main_location[mobile]": None, "person_first_name": "Ada",
    }
