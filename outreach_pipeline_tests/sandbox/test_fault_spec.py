"""`parse_fault_spec`: the `--faults` text and JSON forms, and the errors bad specs get."""

from __future__ import annotations

import json

import pytest

from outreach_pipeline.sandbox.faults import FaultInjector, FaultRule, FaultSpecError, parse_fault_spec


def test_empty_spec_means_no_faults() -> None:
    assert parse_fault_spec("") == []
    assert parse_fault_spec("   ") == []


def test_text_form_parses_every_kind_with_typed_options() -> None:
    rules = parse_fault_spec(
        "rate_limit:count=20:retry_after=2, status:status=502:rate=0.05:methods=GET|put,"
        "slow:delay_ms=300,drop_after_write:rate=0.02,malformed_json:rate=0.01:path=/api/v2/prospects"
    )
    assert [rule.kind for rule in rules] == [
        "rate_limit",
        "status",
        "slow",
        "drop_after_write",
        "malformed_json",
    ]
    burst, status, slow, drop, malformed = rules
    assert (burst.count, burst.retry_after, burst.rate) == (20, 2, 1.0)
    assert (status.status, status.rate, status.methods) == (502, 0.05, ["GET", "put"])
    assert slow.delay_ms == 300 and slow.count is None
    assert drop.rate == 0.02
    assert malformed.path == "/api/v2/prospects"


def test_json_form_equals_text_form() -> None:
    text = parse_fault_spec("status:status=504:rate=0.5:methods=POST,slow:delay_ms=10:count=3")
    as_json = parse_fault_spec(
        json.dumps(
            [
                {"kind": "status", "status": 504, "rate": 0.5, "methods": ["POST"]},
                {"kind": "slow", "delay_ms": 10, "count": 3},
            ]
        )
    )
    assert as_json == text


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ("explode:rate=1", "kind"),
        ("status:status=200", "status"),
        ("status:rate=1.5", "rate"),
        ("slow:delay_ms=soon", "delay_ms"),
        ("rate_limit:count=-1", "count"),
        ("rate_limit:burst=3", "burst"),
        ("rate_limit:count", "'count'"),
        ("rate_limit:count=1,", "kind"),
        ('[{"kind": "slow"', "invalid fault spec"),
        ('[{"kind": "slow", "delay": 5}]', "delay"),
        ("[1]", "FaultRule"),
    ],
)
def test_bad_specs_raise_an_error_naming_the_problem(spec: str, named: str) -> None:
    with pytest.raises(FaultSpecError) as caught:
        parse_fault_spec(spec)
    assert named in str(caught.value)


def test_error_names_the_rule_by_position_and_text() -> None:
    with pytest.raises(FaultSpecError, match=r"fault rule 2 \('slow:delay=5'\): delay: Extra inputs"):
        parse_fault_spec("rate_limit:count=1,slow:delay=5")


def test_fault_spec_error_is_a_value_error() -> None:
    # The CLI and the admin API catch ValueError; the spec error must be one.
    assert issubclass(FaultSpecError, ValueError)


def test_injector_serves_a_burst_of_exactly_count_then_stops() -> None:
    injector = FaultInjector(parse_fault_spec("rate_limit:count=3"), seed=1)
    fired = [bool(injector.draw("GET", "/api/v2/prospects")) for _ in range(6)]
    assert fired == [True, True, True, False, False, False]
    assert injector.rules[0].count == 0


def test_injector_matches_path_prefix_methods_and_writes_only_for_drops() -> None:
    injector = FaultInjector(
        [
            FaultRule(kind="status", path="/api/v2/accounts", methods=["get"]),
            FaultRule(kind="drop_after_write"),
            FaultRule(kind="slow", delay_ms=5),
        ]
    )
    assert {r.kind for r in injector.draw("GET", "/api/v2/accounts/4")} == {"status", "slow"}
    assert {r.kind for r in injector.draw("POST", "/api/v2/accounts")} == {"drop_after_write", "slow"}
    assert {r.kind for r in injector.draw("GET", "/api/v2/prospects")} == {"slow"}


def test_injector_rate_is_seeded_and_roughly_honoured() -> None:
    def draws(seed: int) -> list[bool]:
        injector = FaultInjector(parse_fault_spec("status:rate=0.3"), seed=seed)
        return [bool(injector.draw("GET", "/x")) for _ in range(400)]

    assert draws(7) == draws(7)
    assert 80 <= sum(draws(7)) <= 160
