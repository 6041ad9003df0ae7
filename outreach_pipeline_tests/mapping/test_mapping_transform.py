"""stage_records: every transform, the validation messages, lineage; and preflight against schema metadata."""

import pandas as pd
import pytest

from outreach_pipeline.mapping import load_mapping_set
from outreach_pipeline.mapping.errors import ErrorKind, messages, read_errors
from outreach_pipeline.mapping.transform import column_lineage, lineage_columns, preflight, stage_records
from outreach_pipeline_tests.engine.frames import with_email_required

MAPPING = load_mapping_set()
UPDATED = pd.Timestamp("2024-03-01T10:00:00Z")


def _frame(**columns) -> pd.DataFrame:
    rows = len(next(iter(columns.values())))
    base = {
        "id": pd.array(range(1, rows + 1), dtype="Int64"),
        "createdAt": [UPDATED] * rows,
        "updatedAt": [UPDATED] * rows,
    }
    return pd.DataFrame({**base, **columns})


def _accounts(**overrides) -> pd.DataFrame:
    columns = {
        "name": ["Acme"],
        "websiteUrl": [None],
        "industry": [None],
        "numberOfEmployees": [None],
        "locality": [None],
        "description": [None],
        "customId": [None],
    }
    columns.update(overrides)
    return _frame(**columns)


def _prospects(rows: int = 1, **overrides) -> pd.DataFrame:
    attributes = [
        "firstName",
        "middleName",
        "lastName",
        "title",
        "addressStreet",
        "addressCity",
        "addressState",
        "addressZip",
        "addressCountry",
        "linkedInUrl",
        "twitterUrl",
        "facebookUrl",
        "websiteUrl1",
        "emailOptedOut",
        "externalId",
    ]
    columns = {name: [None] * rows for name in attributes}
    columns |= {
        "emails": [["p@example.com"]] * rows,
        "workPhones": [[]] * rows,
        "mobilePhones": [None] * rows,
        "accountId": pd.array([None] * rows, dtype="Int64"),
    }
    columns.update(overrides)
    return _frame(**columns)


def _opportunities(**overrides) -> pd.DataFrame:
    columns = {
        "name": ["Deal"],
        "amount": [None],
        "currencyType": [None],
        "closeDate": [None],
        "probability": [None],
        "opportunityStageId": pd.array([None], dtype="Int64"),
        "accountId": pd.array([None], dtype="Int64"),
        "customId": [None],
    }
    columns.update(overrides)
    return _frame(**columns)


OPPORTUNITY_LOOKUPS = {
    "opportunityStage": pd.DataFrame({"id": [1, 2], "name": ["Open", "Won"]}),
    "opportunityProspectRole": pd.DataFrame(
        {
            "id": [12, 10, 11],
            "opportunityId": [1, 1, 9],
            "prospectId": [30, 20, 40],
            "role": ["Champion", "Buyer", None],
        }
    ),
}


def _stage_one(entity: str, frame: pd.DataFrame, **kwargs) -> dict:
    return stage_records(frame, MAPPING.entity(entity), **kwargs).iloc[0].to_dict()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("  Acme  Ltd ", "Acme  Ltd"), ("x", "x"), ("Line\r\nTwo", "Line\nTwo")],
)
def test_string_is_stripped(raw: str, expected: str) -> None:
    assert _stage_one("accounts", _accounts(name=[raw]))["name"] == expected


@pytest.mark.parametrize("raw", [None, "", "   "])
def test_blank_strings_become_none(raw) -> None:
    row = _stage_one("accounts", _accounts(industry=[raw]))
    assert pd.isna(row["industry"])
    assert messages(row["validation_errors"]) == []


@pytest.mark.parametrize(
    ("raw", "expected", "error"),
    [
        (250, 250, None),
        ("42", 42, None),
        (12.0, 12, None),
        ("lots", None, "numberOfEmployees 'lots' is not an integer"),
        (12.5, None, "is not an integer (organisation_num_employees)"),
    ],
)
def test_integer(raw, expected, error) -> None:
    row = _stage_one("accounts", _accounts(numberOfEmployees=pd.Series([raw], dtype=object)))
    assert (
        pd.isna(row["organisation_num_employees"])
        if expected is None
        else row["organisation_num_employees"] == expected
    )
    assert [m for m in messages(row["validation_errors"]) if error and error in m] or (
        error is None and not messages(row["validation_errors"])
    )


@pytest.mark.parametrize(
    ("raw", "expected", "valid"),
    [
        (True, True, True),
        (False, False, True),
        ("yes", True, True),
        ("0", False, True),
        (None, None, True),
        ("maybe", None, False),
    ],
)
def test_boolean(raw, expected, valid) -> None:
    row = _stage_one("prospects", _prospects(emailOptedOut=pd.Series([raw], dtype=object)))
    assert pd.isna(row["no_email_soliciting"]) if expected is None else row["no_email_soliciting"] == expected
    assert (messages(row["validation_errors"]) == []) is valid
    if not valid:
        assert messages(row["validation_errors"]) == [
            "prospect 1: emailOptedOut 'maybe' is not a boolean (no_email_soliciting)"
        ]


def test_opportunity_transforms_and_lookups() -> None:
    frame = _opportunities(
        amount=[1500],
        currencyType=["usd"],
        closeDate=["2024-05-02T23:30:00-02:00"],
        probability=["40"],
        opportunityStageId=pd.array([2], dtype="Int64"),
        accountId=pd.array([7], dtype="Int64"),
    )
    row = _stage_one("opportunities", frame, lookups=OPPORTUNITY_LOOKUPS)
    assert row["amount"] == "1500 USD 0"
    assert row["predicted_close_date"] == " 3 May 2024"  # UTC date of the Outreach instant
    assert row["probability"] == 40
    assert row["opportunity_stage"] == "Won"
    assert row["organisation_id"] == 7
    # Contacts sorted by the role record's id so the role list stays aligned with the id list.
    assert row["opportunity_contact_ids"] == [20, 30]
    assert row["opportunity_contact_roles"] == ["Buyer", "Champion"]
    assert messages(row["validation_errors"]) == []


def test_currency_uses_default_code_and_reports_bad_values() -> None:
    frame = pd.concat(
        [
            _opportunities(amount=pd.Series([amount], dtype=object), currencyType=[code])
            for amount, code in [(100, None), ("ten", "GBP"), (5, "Euro")]
        ],
        ignore_index=True,
    )
    frame["id"] = pd.array([1, 2, 3], dtype="Int64")
    staged = stage_records(frame, MAPPING.entity("opportunities"), lookups=OPPORTUNITY_LOOKUPS)
    assert staged["amount"].iloc[0] == "100 GBP 0"
    assert messages(staged["validation_errors"].iloc[1]) == ["opportunity 2: amount 'ten' is not a number (amount)"]
    assert messages(staged["validation_errors"].iloc[2]) == [
        "opportunity 3: currencyType 'EURO' is not a currency code (amount)"
    ]


@pytest.mark.parametrize("raw", ["not-a-date", "2024-13-45T00:00:00Z", "31/02/2024"])
def test_invalid_dates_name_record_and_field(raw: str) -> None:
    row = _stage_one("opportunities", _opportunities(closeDate=[raw]), lookups=OPPORTUNITY_LOOKUPS)
    assert messages(row["validation_errors"]) == [
        f"opportunity 1: closeDate '{raw}' is not a valid date (predicted_close_date)"
    ]


def test_datetime_picklist_related_and_bool_picklist_for_sequence_states() -> None:
    frame = _frame(
        state=["opted_out", "active", "unknown"],
        stateChangedAt=[pd.Timestamp("2024-05-15T16:36:54+02:00")] * 3,
        prospectId=pd.array([17, 18, 19], dtype="Int64"),
        sequenceId=pd.array([3, 3, 4], dtype="Int64"),
        sequenceStepId=pd.array([8, None, 8], dtype="Int64"),
    )
    lookups = {
        "sequence": pd.DataFrame({"id": [3], "name": ["Welcome"]}),
        "sequenceStep": pd.DataFrame({"id": [8], "order": [2]}),
    }
    staged = stage_records(frame, MAPPING.entity("sequence_states"), lookups=lookups)
    assert staged["cf_person_outreach_sequence_state"].tolist()[:2] == ["Opted Out", "Active - Running"]
    assert staged["cf_person_outreach_sequence_state_updated_at"].iloc[0] == "Wed May 15 14:36:54 UTC 2024"
    assert staged["cf_person_outreach_sequence"].iloc[0] == "Welcome"
    assert pd.isna(staged["cf_person_outreach_sequence"].iloc[2])
    assert staged["cf_person_outreach_sequence_step"].iloc[0] == 2
    assert staged["no_email_soliciting"].iloc[0]
    assert pd.isna(staged["no_email_soliciting"].iloc[1])  # unmapped: blank, so the checkbox is left alone
    assert staged["cf_person_outreach_id"].tolist() == [
        17,
        18,
        19,
    ]  # the person of the state, not the state id
    assert messages(staged["validation_errors"].iloc[2]) == [
        "sequenceState 3: state 'unknown' is not in the picklist map of cf_person_outreach_sequence_state "
        "(allowed: active, bounced, disabled, failed, finished, opted_out, paused, pending)"
    ]


def test_link_prefix_keeps_calls_and_tasks_apart() -> None:
    frame = _frame(
        outcome=["Answered"], note=[None], completedAt=[None], prospectId=pd.array([4], dtype="Int64")
    )
    row = _stage_one("calls", frame)
    assert row["cf_task_outreach_id"] == "call:1"
    assert row["primary_contact_id"] == 4


def test_32kb_string_over_limit_and_required_blank() -> None:
    huge = "x" * 32768
    frame = _prospects(2, firstName=[huge, "Ann"], emails=[["a@example.com"], ["   "]])
    staged = stage_records(frame, with_email_required(MAPPING.entity("prospects")))
    assert [messages(cell) for cell in staged["validation_errors"]] == [
        ["prospect 1: firstName is 32768 characters, over the 255 limit of person_first_name"],
        ["prospect 2: main_location[email] is blank (required)"],
    ]


def test_array_elements_and_missing_elements() -> None:
    frame = _prospects(2, emails=[["a@x.com", " b@x.com "], ["c@x.com"]], workPhones=[["+44 1"], None])
    staged = stage_records(frame, MAPPING.entity("prospects"))
    assert staged["main_location[alternate_email]"].tolist()[0] == "b@x.com"
    assert pd.isna(staged["main_location[alternate_email]"].iloc[1])
    assert pd.isna(staged["main_location[telephone]"].iloc[1])


def test_duplicate_outreach_ids_are_errors_on_every_copy() -> None:
    frame = _prospects(3)
    frame["id"] = pd.array([5, 5, 6], dtype="Int64")
    errors = [messages(cell) for cell in stage_records(frame, MAPPING.entity("prospects"))["validation_errors"]]
    assert errors[0] == errors[1] == ["prospect 5: id appears 2 times in this window (duplicate outreach id)"]
    assert errors[2] == []


def test_output_contract_columns_and_order() -> None:
    frame = _prospects(3)
    frame["id"] = pd.array([9, 3, 7], dtype="Int64")
    staged = stage_records(frame, MAPPING.entity("prospects"))
    assert staged["outreach_id"].tolist() == [9, 3, 7]
    assert staged["outreach_updated_at"].iloc[0] == UPDATED
    assert "object_ref" not in staged.columns  # a to_outreach field is not staged for Workbooks
    assert {"person_first_name", "main_location[email]", "cf_person_outreach_id", "validation_errors"} <= set(
        staged
    )


def test_missing_lookup_names_entity_and_field() -> None:
    with pytest.raises(KeyError, match=r"opportunity_stage.*opportunityStage"):
        stage_records(_opportunities(), MAPPING.entity("opportunities"))


def test_column_lineage() -> None:
    lineage = column_lineage(MAPPING.entity("opportunities"))
    assert lineage["amount"] == ["amount", "currencyType"]
    assert lineage["cf_opportunity_outreach_id"] == ["id"]
    assert lineage["opportunity_stage"] == ["opportunityStage.name"]


def test_lineage_columns_are_read_with_the_mapping_parser() -> None:
    lineage = lineage_columns(MAPPING.entity("opportunities"))
    assert lineage["amount"] == ["amount", "currencyType"]
    assert lineage["opportunity_stage"] == ["opportunityStageId"]  # the extracted column of the relation
    assert lineage["opportunity_contact_ids"] == ["opportunityProspectRole"]
    assert lineage_columns(MAPPING.entity("prospects"))["main_location[email]"] == ["emails"]


def test_errors_are_records_with_field_and_kind() -> None:
    frame = _prospects(3, firstName=["x" * 300, "Ann", "Bo"], emails=[["a@x.com"], ["   "], ["b@x.com"]])
    frame["id"] = pd.array([1, 2, 2], dtype="Int64")
    frame["emailOptedOut"] = pd.Series([None, None, "maybe"], dtype=object)
    cells = stage_records(frame, with_email_required(MAPPING.entity("prospects")))["validation_errors"].tolist()
    kinds = [[(e.field, e.kind) for e in read_errors(cell)] for cell in cells]
    assert kinds == [
        [("person_first_name", ErrorKind.TOO_LONG)],
        [(None, ErrorKind.DUPLICATE), ("main_location[email]", ErrorKind.REQUIRED)],
        [(None, ErrorKind.DUPLICATE), ("no_email_soliciting", ErrorKind.INVALID_BOOLEAN)],
    ]


# --- preflight ---------------------------------------------------------------------------------------------

_DATATYPES = {
    "string": "string",
    "integer": "integer",
    "boolean": "boolean",
    "wb_date": "date",
    "wb_datetime": "datetime",
    "wb_currency": "currency",
    "picklist": "picklist",
    "link": "integer",
    "string_list": "array",
}


def _workbooks_types() -> list[dict]:
    """Metadata that satisfies the default mapping, built from it (each record type once)."""
    classes: dict[str, dict[str, dict]] = {}
    for entity, field in MAPPING.iter_fields():
        fields = classes.setdefault(entity.workbooks_record_type, {})
        kind = "array" if getattr(field.transform, "many", False) else _DATATYPES[field.transform.kind]
        fields.setdefault(field.workbooks, {"name": field.workbooks, "datatype": kind})
        for owned in [entity.match.link_key, *entity.flag_fields()]:
            fields.setdefault(owned, {"name": owned, "datatype": "string"})
    return [{"class_name": name, "fields": list(fields.values())} for name, fields in classes.items()]


def _mapping_with_custom_field(transform: dict):
    raw = MAPPING.model_dump()
    raw["entities"]["prospects"]["fields"].append(
        {
            "outreach": "custom7",
            "workbooks": "person_job_role",
            "direction": "to_workbooks",
            "transform": transform,
        }
    )
    return type(MAPPING).model_validate(raw)


def test_preflight_accepts_matching_metadata() -> None:
    assert preflight(MAPPING, _workbooks_types(), []) == []


def test_preflight_reports_missing_and_incompatible_fields() -> None:
    types = _workbooks_types()
    person = next(entry for entry in types if entry["class_name"] == "Private::Crm::Person")
    person["fields"] = [
        f for f in person["fields"] if f["name"] not in {"person_job_title", "cf_person_outreach_duplicate"}
    ]
    for field in person["fields"]:
        if field["name"] == "no_email_soliciting":
            field["datatype"] = "date"
    types = [entry for entry in types if entry["class_name"] != "Private::Crm::Opportunity"]
    problems = preflight(MAPPING, types, [])
    assert (
        "prospects: Workbooks field person_job_title (mapped from title) is not a field of Private::Crm::Person"
        in problems
    )
    assert any(
        p.startswith("prospects: Workbooks field cf_person_outreach_duplicate (owned by the integration)")
        for p in problems
    )
    assert (
        "prospects: Workbooks field no_email_soliciting has datatype 'date', which the boolean transform of "
        "emailOptedOut cannot write"
    ) in problems
    assert (
        "opportunities: Workbooks record type Private::Crm::Opportunity is not in metadata/types" in problems
    )


@pytest.mark.parametrize(
    ("outreach_types", "expected"),
    [
        ([{"type": "prospect", "meta": {"validations": {"custom7": {"type": "string"}}}}], None),
        (
            [{"type": "prospect", "meta": {"validations": {}}}],
            "prospects: Outreach custom field prospect.custom7 (mapped to person_job_role) is not defined in /types",
        ),
        ([{"type": "Prospect", "meta": {"validations": {"custom7": {"type": "url"}}}}], None),
    ],
)
def test_preflight_checks_outreach_custom_fields(outreach_types, expected) -> None:
    mapping = _mapping_with_custom_field({"kind": "string", "max_length": 255})
    types = _workbooks_types()
    person = next(entry for entry in types if entry["class_name"] == "Private::Crm::Person")
    person["fields"].append({"name": "person_job_role", "datatype": "string"})
    problems = preflight(mapping, types, outreach_types)
    assert problems == ([expected] if expected else [])


def test_preflight_rejects_incompatible_outreach_custom_type() -> None:
    mapping = _mapping_with_custom_field("integer")
    types = _workbooks_types()
    next(e for e in types if e["class_name"] == "Private::Crm::Person")["fields"].append(
        {"name": "person_job_role", "datatype": "integer"}
    )
    problems = preflight(
        mapping, types, [{"type": "prospect", "meta": {"validations": {"custom7": {"type": "url"}}}}]
    )
    assert problems == [
        "prospects: Outreach custom field prospect.custom7 has type 'url', incompatible with the "
        "integer transform to person_job_role"
    ]


def test_outreach_fields_name_what_the_mapping_reads_for_sparse_fieldsets() -> None:
    from outreach_pipeline.mapping.models import load_mapping_set
    from outreach_pipeline.mapping.transform import outreach_fields

    mappings = load_mapping_set()
    prospect_fields = outreach_fields(mappings.entity("prospects"))
    # Attributes, array attributes, the account relationship behind accountId, and the window's timestamps.
    assert {"firstName", "emails", "workPhones", "account", "createdAt", "updatedAt"} <= set(prospect_fields)
    assert "accountId" not in prospect_fields and "externalId" not in prospect_fields  # to_outreach only
    opportunity_fields = outreach_fields(mappings.entity("opportunities"))
    assert {"opportunityStage", "currencyType", "account", "amount"} <= set(opportunity_fields)
