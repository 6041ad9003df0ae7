"""Instance profiles: which Dagster instance configuration and which state databases a sync uses.

Rules:
* `sandbox` (the default) is the project's top-level `dagster.yaml`: SQLite under DAGSTER_HOME, pools,
  run monitoring. `production` is `production.yaml` beside this module: the instance storage (runs,
  events, schedules) on Postgres, run monitoring, run retries and pools; the sync ledger on Postgres too.
* `sync` and `dev` take the profile from `--profile` or the `profile` setting (`OUTREACH_PIPELINE_PROFILE`) and write its
  configuration into `$DAGSTER_HOME/dagster.yaml`, marked as written by a profile. A `dagster.yaml` that
  carries no mark and is no profile's copy was written by hand: it is left alone and used as it is.
* Secrets never enter a profile file: the Postgres URLs come from the environment (`{env: ...}` in the
  YAML, `dg.EnvVar` for the ledger). The production profile refuses to start without them, or with URLs
  that do not name the psycopg2 driver (SQLAlchemy 2.1 reads a bare `postgresql://` as psycopg 3).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from outreach_pipeline.settings import PipelineSettings, Profile

__all__ = ["InstanceConfig", "Profile", "ProfileError", "check_environment", "write_instance_config"]

INSTANCE_PG_URL_VARIABLE = "DAGSTER_PG_URL"
LEDGER_URL_VARIABLE = PipelineSettings.variable("ledger_url")
POSTGRES_DRIVER = "postgresql+psycopg2"
MARK = "# outreach-pipeline profile: "
_PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent


class ProfileError(ValueError):
    """The environment does not satisfy a profile; the message names each variable and what to set."""

    def __init__(self, profile: Profile, problems: list[str]) -> None:
        super().__init__(f"the {profile.value} profile cannot start: " + "; ".join(problems))
        self.profile = profile
        self.problems = problems


def instance_config_source(profile: Profile) -> Path:
    """The profile's Dagster instance configuration file."""
    if profile is Profile.SANDBOX:
        return _PROJECT_ROOT / "dagster.yaml"
    return Path(__file__).with_name(f"{profile.value}.yaml")


def check_environment(profile: Profile, environ: Mapping[str, str] | None = None) -> None:
    """Refuse a profile whose databases the environment does not name (before anything starts).

    Raises:
        ProfileError: Naming every missing or unusable variable.
    """
    if profile is not Profile.PRODUCTION:
        return
    environ = environ if environ is not None else os.environ
    problems = [
        problem
        for variable, what in ((INSTANCE_PG_URL_VARIABLE, "the Dagster instance"), (LEDGER_URL_VARIABLE, "the sync ledger"))
        if (problem := _postgres_url_problem(variable, environ.get(variable), what))
    ]
    if problems:
        raise ProfileError(profile, problems)


def _postgres_url_problem(variable: str, value: str | None, what: str) -> str | None:
    example = f"{POSTGRES_DRIVER}://user:password@host:5432/dbname"
    if not value:
        return f"set {variable} to {what}'s Postgres database, e.g. {example}"
    try:
        drivername = make_url(value).drivername
    except (ArgumentError, ValueError):
        return f"{variable} is not a database URL; use the form {example}"
    if drivername != POSTGRES_DRIVER:
        # The value may hold a password: only the scheme is repeated.
        return f"{variable} uses {drivername}://; {what} needs {POSTGRES_DRIVER}:// (e.g. {example})"
    return None


@dataclass(frozen=True)
class InstanceConfig:
    path: Path
    written: bool  # False: a hand-written dagster.yaml was found and left alone


def write_instance_config(home: Path, profile: Profile) -> InstanceConfig:
    """Put the profile's instance configuration into `home/dagster.yaml`, unless a hand-written one is there.

    Written under a temporary name and renamed, since two syncs may start at once.
    """
    target = home / "dagster.yaml"
    if target.exists() and not _written_by_a_profile(target.read_text(encoding="utf-8")):
        return InstanceConfig(path=target, written=False)
    text = f"{MARK}{profile.value} (rewritten by `outreach-pipeline sync|dev`; edit {instance_config_source(profile).name} instead)\n"
    text += instance_config_source(profile).read_text(encoding="utf-8")
    home.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=home, prefix=".dagster.", suffix=".yaml.tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        Path(tmp_name).replace(target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return InstanceConfig(path=target, written=True)


def _written_by_a_profile(text: str) -> bool:
    # Copies made by `dev` before profiles existed carry no mark but equal the sandbox file.
    return text.startswith(MARK) or any(
        text == instance_config_source(profile).read_text(encoding="utf-8") for profile in Profile
    )
