"""Records of the tables this project owns (erp_export, erp_connector_config) as dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from orderflow_exports.domain.endpoints import endpoint
from orderflow_exports.domain.naming import DraftRef, validate_id
from orderflow_exports.domain.status import ExportStatus

Transport = Literal["sftp", "local"]
DEFAULT_ACK_DEADLINE_SECONDS = 24 * 3600


@dataclass(frozen=True)
class ConnectorConfig:
    """One org's ERP connector: where its ERP takes files and answers with acks.

    Secrets are references (``env:NAME`` or ``file:/path``), never the secret itself.
    """

    org_id: str
    transport: Transport
    export_path: str
    ack_path: str
    enabled: bool = True
    connector_type: str = "DROPZONE_JSON_V1"
    host: str | None = None
    port: int | None = None
    username: str | None = None
    host_key: str | None = None
    private_key_ref: str | None = None
    password_ref: str | None = None
    ack_deadline_seconds: int = DEFAULT_ACK_DEADLINE_SECONDS
    # When the row was last written (None before it is saved): between two orgs whose folders
    # or secret scopes conflict, the row that was there first keeps working.
    updated_at: datetime | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        validate_id(self.org_id, "org_id")
        if self.transport not in ("sftp", "local"):
            raise ValueError(f"transport must be 'sftp' or 'local', got {self.transport!r}")
        if self.connector_type != "DROPZONE_JSON_V1":
            raise ValueError(f"unsupported connector_type {self.connector_type!r}")
        if self.transport == "sftp":
            missing = [name for name in ("host", "username", "host_key") if not getattr(self, name)]
            if missing:
                raise ValueError(f"sftp connector of {self.org_id} needs {', '.join(missing)}")
            if not (self.private_key_ref or self.password_ref):
                raise ValueError(
                    f"sftp connector of {self.org_id} needs private_key_ref or password_ref"
                )
        for ref in (self.private_key_ref, self.password_ref):
            if ref is not None and not ref.startswith(("env:", "file:")):
                raise ValueError("secret references must start with 'env:' or 'file:'")
        if self.ack_deadline_seconds <= 0:
            raise ValueError("ack_deadline_seconds must be positive")

    @property
    def endpoint(self) -> str:
        """The address a session connects to (``sftp://user@host:port`` or ``local``)."""
        return endpoint(self)


@dataclass(frozen=True)
class ExportRecord:
    """One row of ``erp_export``: one export attempt."""

    id: str
    org_id: str
    draft_order_id: str
    connector_type: str
    attempt: int
    status: ExportStatus
    filename: str
    dropzone_path: str
    storage_key: str
    content_sha256: str
    byte_size: int
    line_count: int
    forced: bool
    erp_order_number: str | None
    error_code: str | None
    error_message: str | None
    dagster_run_id: str | None
    created_at: datetime
    sent_at: datetime | None
    acked_at: datetime | None
    updated_at: datetime
    # Set just before the final rename: from then on a missing file may mean the ERP took it.
    rename_started_at: datetime | None = None
    # For FAILED rows: whether trying again may succeed (None: not known, e.g. older rows).
    error_transient: bool | None = None

    @property
    def ref(self) -> DraftRef:
        return DraftRef(self.org_id, self.draft_order_id)


@dataclass(frozen=True)
class NewExport:
    """What is known of an attempt when its PENDING row is inserted (file already built)."""

    id: str
    ref: DraftRef
    attempt: int
    filename: str
    dropzone_path: str
    storage_key: str
    content_sha256: str
    byte_size: int
    line_count: int
    forced: bool
    dagster_run_id: str | None
    created_at: datetime
