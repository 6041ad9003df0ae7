"""Why a sync failed, in one short paragraph: what happened, which system, what to do.

A failure hook keeps each failed step's exception (the in-process run of `sync` shares the process), and
:func:`explain` turns it into a message by its type: the clients' typed errors (which carry the system
that answered), the writer lock's, the mapping's. Anything else gets its type and first line, with
``--verbose`` for the traceback. Messages never hold credentials: the typed errors carry none.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from dataclasses import dataclass

import dagster as dg
from dagster._core.errors import DagsterExecutionStepExecutionError, DagsterUserCodeExecutionError

from outreach_pipeline.clients.http import (
    ApiError,
    AuthenticationError,
    MalformedResponse,
    RateLimited,
    ServerError,
    Service,
    TransportError,
    ValidationFailed,
    WriteOutcomeUnknown,
)
from outreach_pipeline.defs.failure_rate import FailureRateAtError
from outreach_pipeline.defs.resources import ResourceConfigError
from outreach_pipeline.engine.writer_lock import WriterLockBusy, WriterLockLost
from outreach_pipeline.mapping.models import MappingError

_CAPTURED: dict[str, list[tuple[str, BaseException]]] = {}

CREDENTIALS = {
    Service.OUTREACH: "OUTREACH_CLIENT_ID, OUTREACH_CLIENT_SECRET and OUTREACH_REDIRECT_URI, and the connected "
                      "account (`outreach-pipeline auth connect` again if its grant was revoked)",
    Service.WORKBOOKS: "WORKBOOKS_API_KEY, or WORKBOOKS_USERNAME and WORKBOOKS_PASSWORD",
}
URL_VARIABLES = {Service.OUTREACH: "OUTREACH_BASE_URL", Service.WORKBOOKS: "WORKBOOKS_BASE_URL"}


@dg.failure_hook(name="keep_step_exception")
def keep_step_exception(context: dg.HookContext) -> None:
    """Keep the failed step's exception for the terminal's message (the UI has the full event)."""
    if context.op_exception is not None:
        _CAPTURED.setdefault(context.run_id, []).append((context.op.name, context.op_exception))


@dataclass(frozen=True)
class StepFailure:
    step: str
    exception: BaseException


def step_failures(run_id: str) -> list[StepFailure]:
    """The exceptions of the run's failed steps, in order (taken: asked twice, the second answer is empty)."""
    return [StepFailure(step, exc) for step, exc in _CAPTURED.pop(run_id, [])]


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        if isinstance(current, DagsterUserCodeExecutionError) and current.user_exception is not None:
            current = current.user_exception
        else:
            current = current.__cause__ or current.__context__


def root_cause(exc: BaseException) -> BaseException:
    """The first exception of the chain that this module knows how to explain, else the innermost one."""
    known = (ApiError, WriterLockBusy, WriterLockLost, MappingError, ResourceConfigError, dg.Failure)
    chain = list(_chain(exc))
    for item in chain:
        if isinstance(item, known) and not isinstance(item, DagsterExecutionStepExecutionError):
            return item
    return chain[-1]


def explain(exc: BaseException, *, step: str | None = None, base_urls: dict[Service, str] | None = None) -> str:
    """One short paragraph (at most a few lines) for a failure. Connection and credential failures leave the
    request out, so the steps one cause failed share one paragraph."""
    cause = root_cause(exc)
    where = f" (step {step})" if step else ""
    if isinstance(cause, ApiError):
        return _explain_api(cause, where, base_urls or {})
    if isinstance(cause, WriterLockBusy):
        return (f"Another run is writing {cause.target}/{cause.entity}{where}: {cause}.\n"
                "Nothing of this entity was written. Rerun when that run has finished, or raise "
                "SyncSettings.writer_lock_max_wait_seconds.")
    if isinstance(cause, WriterLockLost):
        return f"{cause}{where}.\nCheck that the ledger's database is reachable and rerun: the ledger reconciles."
    if isinstance(cause, MappingError | ResourceConfigError):
        return f"Configuration problem{where}: {cause}"
    if isinstance(cause, FailureRateAtError):
        return (f"{cause.description}{where}.\nThe load's records and its ledger entries are stored; the failed "
                "records and their messages are in the run's materialisations and `outreach-pipeline history`.")
    if isinstance(cause, dg.Failure):
        return (f"{cause.description}{where}.\nFix the mapping file (SyncSettings.mapping_path) or run "
                "`outreach-pipeline install` to create the missing Workbooks fields, then rerun.")
    first_line = (str(cause).strip().splitlines() or [""])[0][:300]
    return (f"Unexpected {type(cause).__name__}{where}: {first_line}\n"
            "Rerun with --verbose for the traceback, or open the run in the Dagster UI.")


def explain_all(failures: list[StepFailure], *, base_urls: dict[Service, str] | None = None) -> dict[str, list[str]]:
    """Messages of the failures, each with the steps it failed, in order of first appearance."""
    grouped: dict[str, list[str]] = {}
    for failure in failures:
        grouped.setdefault(explain(failure.exception, base_urls=base_urls), []).append(failure.step)
    return grouped


def _explain_api(error: ApiError, where: str, base_urls: dict[Service, str]) -> str:
    system = error.service.value if error.service else "An API"
    url = base_urls.get(error.service) if error.service else None
    at = f" at {url}" if url else ""
    request = f"{error.method} {error.path}"
    if isinstance(error, AuthenticationError):
        wanted = CREDENTIALS.get(error.service, "the credentials") if error.service else "the credentials"
        answer = f"HTTP {error.status}" if error.status else "no session"
        return (f"{system}{at} refused the credentials{where} ({answer}"
                f"{f', {error.error_id}' if error.error_id else ''}).\n"
                f"Check {wanted} in the environment.")
    if isinstance(error, TransportError):
        variable = URL_VARIABLES.get(error.service, "the base URL") if error.service else "the base URL"
        return (f"{system}{at} could not be reached{where}: no reply after retries.\n"
                f"Check that the service is up and that {variable} points at it (for the sandbox: "
                "`outreach-pipeline sandbox up`), then rerun: nothing is lost, the next sync resumes.")
    if isinstance(error, ServerError | RateLimited | MalformedResponse | WriteOutcomeUnknown):
        status = f"HTTP {error.status}" if error.status else type(error).__name__
        return (f"{system}{at} kept failing{where}: {request} answered {status} after retries.\n"
                "The service is in trouble or throttling: rerun later; the ledger makes the rerun pick up "
                "where this one stopped.")
    if isinstance(error, ValidationFailed):
        detail = f": {error.detail}" if error.detail else ""
        return (f"{system}{at} refused a request{where}: {request} (HTTP {error.status}){detail}.\n"
                "This usually means the mapping names a field the system does not have: run "
                "`outreach-pipeline install` (it preflights the mapping) and fix the mapping file.")
    return f"{system}{at} failed{where}: {error}"


def formatted_traceback(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))
