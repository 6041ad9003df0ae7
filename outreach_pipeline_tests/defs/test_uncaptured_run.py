"""A sync run in this process releases each step's output once it is stored (defs/scaleout.py).

Dagster's `execute_in_process` keeps every output value until the run ends, so a ranged sync held every frame
of every step at once. `execute_in_process_uncaptured` (what `outreach-pipeline sync` and the pipeline benchmark
run) must not: a later step finds the earlier step's output already collected.
"""

from __future__ import annotations

import gc
import weakref
from typing import Any

import dagster as dg

from outreach_pipeline.defs.scaleout import execute_in_process_uncaptured

PRODUCED: list[weakref.ref[Any]] = []


class Frames:
    """Stands in for a step's DataFrame: only its identity matters."""


class ForgetfulIOManager(dg.IOManager):
    """Stores nothing (as if written to disk) and hands the consumer nothing back."""

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        PRODUCED.append(weakref.ref(obj))

    def load_input(self, context: dg.InputContext) -> None:
        return None


@dg.asset(io_manager_key="forgetful")
def produced() -> Frames:
    return Frames()


@dg.asset(deps=[produced])
def later() -> dg.MaterializeResult:
    gc.collect()
    return dg.MaterializeResult(metadata={"earlier_output_alive": PRODUCED[-1]() is not None})


def _job() -> dg.JobDefinition:
    defs = dg.Definitions(
        assets=[produced, later], jobs=[dg.define_asset_job("both", selection=[produced, later])],
        resources={"forgetful": ForgetfulIOManager()},
    )
    return defs.resolve_job_def("both")


def _earlier_output_alive(result: dg.ExecuteInProcessResult) -> bool:
    [materialization] = result.asset_materializations_for_node("later")
    return bool(materialization.metadata["earlier_output_alive"].value)


def test_a_step_output_is_released_once_stored() -> None:
    with dg.DagsterInstance.ephemeral() as instance:
        result = execute_in_process_uncaptured(_job(), instance=instance, tags={"purpose": "test"}, run_config={})
        assert result.success
        assert not _earlier_output_alive(result)
        assert instance.get_run_by_id(result.run_id).tags["purpose"] == "test"


def test_dagsters_execute_in_process_keeps_it_which_is_what_the_sync_avoids() -> None:
    with dg.DagsterInstance.ephemeral() as instance:
        result = _job().execute_in_process(instance=instance)
        assert result.success
        assert _earlier_output_alive(result), "if Dagster stops capturing outputs, the workaround can go"
