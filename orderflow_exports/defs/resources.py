"""Typed config shells that build the adapters; the work lives in the adapters and services."""

from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field, PrivateAttr
from sqlalchemy import Engine

from orderflow_exports.adapters.dropzones import PooledDropzoneConnector
from orderflow_exports.adapters.local_folders import resolve_local_folders
from orderflow_exports.adapters.secrets import SecretScope
from orderflow_exports.adapters.sftp.settings import SftpSettings
from orderflow_exports.adapters.sql.connectors import SqlConnectorConfigs
from orderflow_exports.adapters.sql.drafts import SqlDraftSource
from orderflow_exports.adapters.sql.engine import make_engine, require_current_schema
from orderflow_exports.adapters.sql.ledger import SqlExportLedger
from orderflow_exports.adapters.stores.local import LocalExportStore
from orderflow_exports.adapters.stores.s3_clients import SharedClients
from orderflow_exports.defs.settings import (
    data_home,
    default_dropzone_home,
    reserved_local_folders,
    resolve_database_url,
    resolve_export_store,
    resolve_secret_dirs,
)
from orderflow_exports.domain.connector_rules import LocalFolders
from orderflow_exports.domain.ports import ExportStore
from orderflow_exports.domain.records import ConnectorConfig

LOCAL_STORE_PREFIX = "exports"


class DatabaseResource(dg.ConfigurableResource):
    """OrderFlow's database: core's drafts (read-only) and our erp_export / connector tables."""

    url: str | None = Field(
        default=None,
        description="SQLAlchemy URL. Unset: env ORDERFLOW_DATABASE_URL, else a SQLite file "
        "under $DAGSTER_HOME/orderflow. A plain postgresql:// URL uses psycopg 3.",
    )
    _engine: Engine | None = PrivateAttr(default=None)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            engine = make_engine(resolve_database_url(self.url))
            require_current_schema(engine)
            self._engine = engine
        return self._engine

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        _ = self.engine  # fail before any work when the schema is missing or old

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def ledger(self) -> SqlExportLedger:
        return SqlExportLedger(self.engine)

    def drafts(self) -> SqlDraftSource:
        return SqlDraftSource(self.engine)

    def connector_configs(self) -> SqlConnectorConfigs:
        return SqlConnectorConfigs(self.engine)


# The SFTP defaults are declared once, in SftpSettings; the resource's fields start from them.
_SFTP_DEFAULTS = SftpSettings()


class DropzoneResource(dg.ConfigurableResource):
    """How dropzones are reached. Where each org's dropzone is lives in erp_connector_config."""

    connect_timeout_seconds: float = Field(
        default=_SFTP_DEFAULTS.connect_timeout,
        description="Time allowed for the TCP connect, the SSH banner and the key exchange.",
    )
    auth_timeout_seconds: float = Field(
        default=_SFTP_DEFAULTS.auth_timeout, description="Time allowed for SSH authentication."
    )
    operation_timeout_seconds: float = Field(
        default=_SFTP_DEFAULTS.operation_timeout,
        description="Longest an SFTP operation may go without progress (not the whole "
        "transfer); a blackholed server fails after it with TIMEOUT.",
    )
    fsync: bool = Field(
        default=_SFTP_DEFAULTS.fsync,
        description="Ask the server to fsync each file before it is renamed "
        "(fsync@openssh.com, when advertised), so a published file survives a server crash.",
    )
    keepalive_seconds: int = Field(
        default=_SFTP_DEFAULTS.keepalive_interval,
        description="SSH keepalive interval, so idle NAT paths stay open.",
    )
    preferred_ciphers: list[str] = Field(
        default=list(_SFTP_DEFAULTS.preferred_ciphers),
        description="SSH ciphers in order of preference (GCM is the fastest with OpenSSH).",
    )
    stale_temp_age_seconds: int = Field(
        default=3600,
        description="Temp files of ours older than this are removed from an export folder at "
        "the start of a run.",
    )
    secret_dirs: list[str] | None = Field(
        default=None,
        description="Folders file: secret references may point into; an org's files must lie "
        "in <folder>/<org_id>/. Unset: env ORDERFLOW_SECRET_DIRS (colon-separated absolute "
        "folders), else $DAGSTER_HOME/orderflow/secrets and /run/secrets.",
    )
    _connector: PooledDropzoneConnector | None = PrivateAttr(default=None)

    def secret_scope(self) -> SecretScope:
        return SecretScope(resolve_secret_dirs(self.secret_dirs))

    def sftp_settings(self) -> SftpSettings:
        return SftpSettings(
            connect_timeout=self.connect_timeout_seconds,
            auth_timeout=self.auth_timeout_seconds,
            operation_timeout=self.operation_timeout_seconds,
            keepalive_interval=self.keepalive_seconds,
            preferred_ciphers=tuple(self.preferred_ciphers),
            fsync=self.fsync,
            secrets=self.secret_scope(),
        )

    @property
    def stale_temp_age(self) -> timedelta:
        return timedelta(seconds=self.stale_temp_age_seconds)

    def connector(self) -> PooledDropzoneConnector:
        """The run's dropzone connector: one session per login, closed at teardown."""
        if self._connector is None:
            self._connector = PooledDropzoneConnector(sftp_settings_factory=self.sftp_settings)
        return self._connector

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._connector is not None:
            self._connector.close()
            self._connector = None


# One S3 client per run and process, shared by every ExportStoreResource of the run (see
# adapters/stores/s3_clients.py: the IO manager's nested resource is a separate instance).
_S3_CLIENTS = SharedClients()


class ExportStoreResource(dg.ConfigurableResource):
    """The archive of exported files (one write-once key per export) and the local spool folder.

    Code reaches the archive through :meth:`for_org`, a view restricted to one org's keys, with
    the org taken from the partition. On S3 the boto3 client is built once per run (when the
    resource is set up), shared with every other instance of this resource in the run, and
    closed after the run; its endpoint and credentials come from the standard AWS variables.
    """

    location: str | None = Field(
        default=None,
        description="s3://bucket/prefix, or a local folder. Unset: env ORDERFLOW_EXPORT_STORE, "
        "else $DAGSTER_HOME/orderflow/store. S3 endpoint and credentials come from the "
        "standard AWS variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...).",
    )
    spool_dir: str | None = Field(
        default=None,
        description="Local folder where a document is written before it is published and "
        "archived. Unset: $DAGSTER_HOME/orderflow/spool.",
    )
    _store: ExportStore | None = PrivateAttr(default=None)
    _client_lease: str | None = PrivateAttr(default=None)
    _own_client: Any = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Built here, once per run: a bad ORDERFLOW_EXPORT_STORE fails the run before any work.
        self._store = self._build(context.run_id, context.log)

    def store(self) -> ExportStore:
        """The store over every org; use :meth:`for_org` to read or write archived files."""
        if self._store is None:  # outside a run (scripts, tests): a client of its own
            self._store = self._build(None, None)
        return self._store

    def for_org(self, org_id: str) -> ExportStore:
        """The store restricted to ``org_id``'s keys (``{prefix}/{org_id}/...``)."""
        return self.store().for_org(org_id)

    def _build(self, run_id: str | None, log: Any) -> ExportStore:
        location = resolve_export_store(self.location)
        if not location.startswith("s3://"):
            return LocalExportStore(Path(location), LOCAL_STORE_PREFIX)
        from dagster_aws.s3 import S3Resource

        from orderflow_exports.adapters.stores.s3 import S3ExportStore, parse_s3_url

        bucket, prefix = parse_s3_url(location)

        # S3Resource() leaves endpoint, region and credentials to boto3, which reads
        # AWS_ENDPOINT_URL(_S3), AWS_ACCESS_KEY_ID, AWS_DEFAULT_REGION, profiles, roles, ...
        def build() -> Any:
            return S3Resource().get_client()

        if run_id is None:
            client = self._own_client = build()
        else:
            client, built = _S3_CLIENTS.acquire(run_id, build)
            self._client_lease = run_id
            if built and log is not None:
                log.info(
                    f"export store {location}: S3 client built for run {run_id} "
                    f"(endpoint {client.meta.endpoint_url})"
                )
        return S3ExportStore(client, bucket, prefix)

    def spool_path(self) -> Path:
        return Path(self.spool_dir) if self.spool_dir else data_home() / "spool"

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._client_lease is not None:
            _S3_CLIENTS.release(self._client_lease)
            self._client_lease = None
        if self._own_client is not None:
            self._own_client.close()
            self._own_client = None
        self._store = None


def local_folder_resolver(
    export_store: ExportStoreResource | None, dropzone: DropzoneResource | None
) -> Callable[[Sequence[ConnectorConfig]], LocalFolders]:
    """Resolves local connector folders against the code location's own folders, as these
    resources configure them (the defaults where a resource is not given)."""
    reserved = reserved_local_folders(
        export_store=export_store.location if export_store else None,
        spool_dir=export_store.spool_path() if export_store else None,
        secret_dirs=dropzone.secret_dirs if dropzone else None,
    )

    def resolve(configs: Sequence[ConnectorConfig]) -> LocalFolders:
        return resolve_local_folders(configs, reserved, default_dropzone_home())

    return resolve
