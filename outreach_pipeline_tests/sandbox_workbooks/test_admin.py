"""Custom fields, custom record types, metadata/types and API Data."""

from __future__ import annotations


def _metadata_fields(sandbox, class_name):
    body = sandbox.client.get("metadata/types", {"class_names[]": [class_name]}).json()
    assert [t["class_name"] for t in body["data"]] == [class_name]
    return {field["name"]: field for field in body["data"][0]["fields"]}


def test_custom_fields_become_filterable_columns_and_metadata(sandbox):
    sandbox.create("crm/people", [{"person_last_name": "Before"}])
    created = sandbox.create(
        "admin/custom_fields",
        [
            {"title": "Outreach Id", "resource_type": "Private::Crm::Person", "data_type": "integer", "status": "Available"},
            {"title": "Sync to Outreach", "resource_type": "Private::Crm::Person", "data_type": "boolean"},
            {"title": "Outreach Id", "resource_type": "Private::Crm::Person", "data_type": "string"},
            {"title": "Outreach Sequence State", "resource_type": "Private::Crm::Person", "data_type": "picklist",
             "picklist_values": ["Active - Running", "Opted Out"]},
        ],
    )  # fmt: skip
    names = [o["value_column_name"] for o in created["affected_objects"]]
    assert names == [
        "cf_person_outreach_id",
        "cf_person_sync_to_outreach",
        "cf_person_outreach_id_2",
        "cf_person_outreach_sequence_state",
    ]
    fields = _metadata_fields(sandbox, "Private::Crm::Person")
    assert fields["cf_person_outreach_id"]["datatype"] == "integer"
    assert {
        "required",
        "is_createable",
        "is_updateable",
        "is_filterable",
        "is_nullable",
        "default_value",
        "title",
    } <= set(fields["cf_person_outreach_id"])
    assert [p["value"] for p in fields["cf_person_outreach_sequence_state"]["picklist"]] == [
        "Active - Running",
        "Opted Out",
    ]

    person = sandbox.create(
        "crm/people",
        [{"person_last_name": "After", "cf_person_outreach_id": "42", "cf_person_sync_to_outreach": "true",
          "cf_person_outreach_sequence_state": "Opted Out"}],
    )["affected_objects"][0]  # fmt: skip
    assert person["cf_person_outreach_id"] == 42
    assert sandbox.ids("crm/people", [("cf_person_outreach_id", "eq", "42")]) == [person["id"]]
    assert sandbox.ids("crm/people", [("cf_person_sync_to_outreach", "false", "")]) == [1]
    bad = sandbox.client.batch(
        "crm/people", [{"person_last_name": "X", "cf_person_outreach_sequence_state": "Sideways"}], "create"
    ).json()
    assert "picklist" in bad["affected_object_information"][0]["errors"]["cf_person_outreach_sequence_state"]
    assert "ix_people_cf_person_outreach_id" in {
        index["name"]
        for index in __import__("sqlalchemy").inspect(sandbox.store._engine).get_indexes("people")
    }


def test_custom_field_errors_name_the_field(sandbox):
    response = sandbox.client.batch(
        "admin/custom_fields",
        [{"title": "X", "resource_type": "Private::Crm::Nothing", "data_type": "string"}],
        "create",
    ).json()
    assert "resource_type" in response["affected_object_information"][0]["errors"]
    response = sandbox.client.batch(
        "admin/custom_fields",
        [{"title": "X", "resource_type": "Private::Crm::Person", "data_type": "blob"}],
        "create",
    ).json()
    assert "data_type 'blob'" in response["affected_object_information"][0]["errors"]["data_type"]


def test_custom_record_type_exists_only_once_created(sandbox):
    assert sandbox.client.get("custom_record/outreach_sequences").status_code == 404
    created = sandbox.create(
        "admin/custom_record_types", [{"name": "Outreach Sequence", "name_plural": "Outreach Sequences"}]
    )["affected_objects"][0]
    assert created["controller_path"] == "custom_record/outreach_sequences"
    resource_type = created["resource_type"]
    sandbox.create(
        "admin/custom_fields", [{"title": "Enabled", "resource_type": resource_type, "data_type": "boolean"}]
    )
    sequence = sandbox.create(
        "custom_record/outreach_sequences", [{"name": "Welcome", "cf_outreach_sequence_enabled": "1"}]
    )["affected_objects"][0]
    assert sequence["cf_outreach_sequence_enabled"] is True and sequence["type"] == resource_type
    assert sandbox.ids(
        "custom_record/outreach_sequences", [("cf_outreach_sequence_enabled", "true", "")]
    ) == [1]
    sandbox.client.batch("admin/custom_record_types", [{"id": created["id"], "lock_version": 0}], "delete")
    assert sandbox.client.get("custom_record/outreach_sequences").status_code == 404


def test_api_data_key_value_store(sandbox):
    created = sandbox.create("automation/api_data", [{"key": "last_run", "value": "2024-03-15T12:00:00Z"}])
    record = created["affected_objects"][0]
    sandbox.client.batch(
        "automation/api_data",
        [{"id": record["id"], "lock_version": 0, "value": "2024-03-16T00:00:00Z"}],
        "update",
    )
    data = sandbox.client.get("automation/api_data", filters=[("key", "eq", "last_run")]).json()["data"]
    assert [(d["key"], d["value"], d["lock_version"]) for d in data] == [
        ("last_run", "2024-03-16T00:00:00Z", 1)
    ]


def test_schema_survives_reopening_a_file_database(tmp_path):
    from outreach_pipeline.sandbox.workbooks import WorkbooksStore

    url = f"sqlite:///{tmp_path / 'workbooks.db'}"
    first = WorkbooksStore(url)
    first.create_custom_field("Private::Crm::Organisation", "Outreach Id", "integer")
    first.bulk_insert("crm/organisations", [{"name": "Acme", "cf_organisation_outreach_id": 7}])
    first.dispose()
    reopened = WorkbooksStore(url)
    assert reopened.get_record("crm/organisations", 1)["cf_organisation_outreach_id"] == 7
    reopened.dispose()
