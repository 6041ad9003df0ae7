"""Exit codes and short failure messages, through the commands with real processes: failures end in one short
paragraph naming the system and what to do.

The test starts its own `outreach-pipeline sandbox up` process (faults where it needs a failing load) and runs
`outreach-pipeline sync` as subprocesses on temporary DAGSTER_HOMEs.
"""

from __future__ import annotations

from pathlib import Path

from outreach_pipeline_tests.cli.sync_processes import finish, sandbox_process, start_sync, sync_env


def test_exit_codes_and_short_messages(tmp_path: Path) -> None:
    # Most people writes answer 503: the load fails per record and the failure_rate check is at ERROR.
    with sandbox_process(tmp_path / "sandbox", 60, faults="status:status=503:rate=0.9:path=/crm/people:methods=PUT") as info:
        code, out, err = finish(start_sync(sync_env(info, tmp_path / "home")))
        assert code == 1, out + err
        assert "| people" in out  # the summary is printed anyway
        assert "failed check at ERROR severity: workbooks/people: failure_rate" in err, err
        # The failure_rate step fails the run at ERROR, and says which asset, at what rate, after the load was kept.
        assert "workbooks/people: failure rate " in err and "above the ERROR threshold 10.0%" in err, err
        assert "ledger entries are stored" in err, err

        # Wrong credentials: one paragraph naming the system and what to set, no traceback.
        env = {**sync_env(info, tmp_path / "home_creds"), "WORKBOOKS_API_KEY": "not-the-key",
               "OUTREACH_PIPELINE_ALLOW_MIXED": "1"}
        code, out, err = finish(start_sync(env))
        output = out + err
        assert code == 1 and len(output.strip().splitlines()) <= 10, output
        assert "Traceback" not in output and "not-the-key" not in output
        assert "Workbooks" in err and "refused the credentials" in err and "WORKBOOKS_API_KEY" in err, err

    # A service that is down (the sandbox is stopped): the same, naming the URL variable to check.
    code, out, err = finish(start_sync(sync_env(info, tmp_path / "home_down")))
    output = out + err
    assert code == 1 and len(output.strip().splitlines()) <= 10, output
    assert "Traceback" not in output
    assert "could not be reached" in err and "OUTREACH_BASE_URL" in err and "WORKBOOKS_BASE_URL" in err, err
