"""Where the embedded defaults live: under ``DAGSTER_HOME``, else ``./.orderflow``.

Read at execution time through ``dg.EnvVar`` (never at import time), so a code location
loaded once keeps following its environment.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

DATABASE_URL_ENV = "ORDERFLOW_DATABASE_URL"
EXPORT_STORE_ENV = "ORDERFLOW_EXPORT_STORE"
SECRET_DIRS_ENV = "ORDERFLOW_SECRET_DIRS"
EXPORT_RETRY_DELAY_ENV = "ORDERFLOW_EXPORT_RETRY_DELAY_SECONDS"
DEFAULT_EXPORT_RETRY_DELAY_SECONDS = 2.0


def data_home() -> Path:
    """``$DAGSTER_HOME/orderflow`` or ``./.orderflow`` when DAGSTER_HOME is unset."""
    dagster_home = dg.EnvVar("DAGSTER_HOME").get_value()
    if dagster_home:
        return Path(dagster_home) / "orderflow"
    return Path(".orderflow").resolve()


def export_retry_delay() -> float:
    """First delay, in seconds, of ``export_json``'s step retries (it doubles, with jitter).

    A retry policy is part of the asset's definition, which Dagster builds when the code
    location loads: this is the one setting read then, from env
    ``ORDERFLOW_EXPORT_RETRY_DELAY_SECONDS`` (default 2). A value that is not a number from 0
    to 300 stops the load with a message naming the variable, rather than retrying on a guess.
    """
    raw = dg.EnvVar(EXPORT_RETRY_DELAY_ENV).get_value()
    if raw is None or not raw.strip():
        return DEFAULT_EXPORT_RETRY_DELAY_SECONDS
    try:
        delay = float(raw)
    except ValueError:
        delay = float("nan")
    if not 0 <= delay <= 300:  # also false for nan
        raise ValueError(
            f"{EXPORT_RETRY_DELAY_ENV}={raw!r}: expected seconds from 0 to 300 (default "
            f"{DEFAULT_EXPORT_RETRY_DELAY_SECONDS:g})"
        )
    return delay


def default_database_url() -> str:
    return f"sqlite:///{data_home() / 'orderflow.db'}"


def resolve_database_url(configured: str | None) -> str:
    return configured or dg.EnvVar(DATABASE_URL_ENV).get_value() or default_database_url()


def resolve_export_store(configured: str | None) -> str:
    return configured or dg.EnvVar(EXPORT_STORE_ENV).get_value() or str(data_home() / "store")


def default_secret_dirs() -> tuple[str, ...]:
    """``$DAGSTER_HOME/orderflow/secrets`` (``./.orderflow/secrets``) and ``/run/secrets``."""
    return (str(data_home() / "secrets"), "/run/secrets")


def resolve_secret_dirs(configured: list[str] | None) -> tuple[str, ...]:
    """Folders ``file:`` secret references may point into (each org under ``<folder>/<org_id>``).

    ``configured`` (the dropzone resource's ``secret_dirs``), else env ``ORDERFLOW_SECRET_DIRS``
    (colon-separated absolute folders), else :func:`default_secret_dirs`.
    """
    from orderflow_exports.adapters.secrets import parse_secret_dirs

    if configured:
        return parse_secret_dirs(":".join(configured), default_secret_dirs())
    return parse_secret_dirs(dg.EnvVar(SECRET_DIRS_ENV).get_value(), default_secret_dirs())


def reserved_local_folders(
    *,
    export_store: str | None = None,
    spool_dir: str | Path | None = None,
    secret_dirs: list[str] | None = None,
) -> tuple[tuple[str, str], ...]:
    """The code location's own folders, which no local dropzone folder may equal or nest with.

    The export store (when local), the spool, every secret folder and ``DAGSTER_HOME`` (or
    ``./.orderflow`` without it), each resolved like the resources resolve them.
    """
    folders: list[tuple[str, str]] = []
    store = resolve_export_store(export_store)
    if not store.startswith("s3://"):
        folders.append(("the export store", store))
    folders.append(("the spool", str(spool_dir) if spool_dir else str(data_home() / "spool")))
    try:
        secrets = resolve_secret_dirs(secret_dirs)
    except ValueError:
        secrets = default_secret_dirs()  # a bad setting fails where secrets are read
    folders += [("the secret folder", folder) for folder in secrets]
    dagster_home = dg.EnvVar("DAGSTER_HOME").get_value()
    if dagster_home:
        folders.append(("DAGSTER_HOME", dagster_home))
    else:
        folders.append(("the data folder", str(data_home())))
    return tuple(folders)


def default_dropzone_home() -> str:
    """``$DAGSTER_HOME/orderflow/dropzones``: local dropzones may live there (the demo's do)."""
    return str(data_home() / "dropzones")
