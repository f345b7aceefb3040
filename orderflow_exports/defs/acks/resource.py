"""``AckProcessingResource``: the bounds of an ack pass, and the pass the sensor and job share.

Bounds that ``AckSettings`` also has take their defaults from it (one source); the time budgets
of a sensor tick and of a job run exist only here.
"""

# No ``from __future__ import annotations``: Dagster reads the resource annotations.

from collections.abc import Sequence
from typing import Any

import dagster as dg
from pydantic import Field

from orderflow_exports.adapters.dropzones import PooledDropzoneConnector
from orderflow_exports.application.acks.memory import AckPassMemory
from orderflow_exports.application.acks.processor import AckProcessor
from orderflow_exports.application.acks.results import AckPassSummary
from orderflow_exports.application.acks.settings import DEFAULT_ACK_SETTINGS, AckSettings
from orderflow_exports.defs.resources import (
    DatabaseResource,
    DropzoneResource,
    local_folder_resolver,
)

ACK_PROCESSING_RESOURCE_KEY = "ack_processing"


class AckProcessingResource(dg.ConfigurableResource):
    """Bounds of one ack pass (sensor tick or ``process_acks_job`` run).

    The ack deadline itself is per org: ``erp_connector_config.ack_deadline_seconds``.
    """

    max_files_per_org: int = Field(
        default=DEFAULT_ACK_SETTINGS.max_files_per_org,
        ge=1,
        description="Ack files handled per org and pass; the rest waits for the next pass.",
    )
    max_ack_bytes: int = Field(
        default=DEFAULT_ACK_SETTINGS.max_bytes,
        ge=1,
        description="Larger ack files are moved to error/ unread.",
    )
    max_timeouts_per_org: int = Field(
        default=DEFAULT_ACK_SETTINGS.max_timeouts_per_org,
        ge=1,
        description="SENT exports expired (ACK_TIMEOUT) per org and pass.",
    )
    sensor_time_budget_seconds: float = Field(
        default=30.0,
        gt=0,
        description="A sensor tick starts no new file or org after this long; the daemon "
        "kills an evaluation at 60 s (DAGSTER_SENSOR_GRPC_TIMEOUT_SECONDS).",
    )
    sensor_deadline_seconds: float = Field(
        default=50.0,
        gt=0,
        lt=60,
        description="A sensor tick waits for no org's pass beyond this (hard end, under the "
        "daemon's 60 s limit); an org still running then is abandoned and reported.",
    )
    org_time_budget_seconds: float = Field(
        default=20.0,
        gt=0,
        description="Longest one org's pass may take in a sensor tick; after it the org's "
        "connection is closed and the org is reported as timed out (TIMEOUT).",
    )
    job_org_time_budget_seconds: float = Field(
        default=300.0,
        gt=0,
        description="Longest one org's pass may take in process_acks_job.",
    )
    settle_seconds: float = Field(
        default=DEFAULT_ACK_SETTINGS.settle_seconds,
        ge=0,
        description="An ack file that does not parse is moved to error/ only when its "
        "modification time is this old, or it was unchanged since the previous tick (it may "
        "still be being written); 0 judges at once. A valid ack is applied at once.",
    )

    def settings(self, *, time_budget_seconds: float | None, sensor: bool = False) -> AckSettings:
        """The bounds of a sensor tick's pass (``sensor``) or of a job run's."""
        return AckSettings(
            max_files_per_org=self.max_files_per_org,
            max_bytes=self.max_ack_bytes,
            max_timeouts_per_org=self.max_timeouts_per_org,
            time_budget_seconds=time_budget_seconds,
            org_time_budget_seconds=(
                self.org_time_budget_seconds if sensor else self.job_org_time_budget_seconds
            ),
            pass_deadline_seconds=self.sensor_deadline_seconds if sensor else None,
            settle_seconds=self.settle_seconds,
        )


def run_ack_pass(
    database: DatabaseResource,
    dropzone: DropzoneResource,
    ack_processing: AckProcessingResource,
    log: Any,
    *,
    time_budget_seconds: float | None,
    start_after: str | None = None,
    memory: AckPassMemory | None = None,
    sensor: bool = False,
    last: Sequence[str] = (),
) -> list[AckPassSummary]:
    """One pass over every enabled org, shared by the sensor and the job."""
    processor = AckProcessor(
        database.ledger(),
        ack_processing.settings(time_budget_seconds=time_budget_seconds, sensor=sensor),
        log=log,
        local_folders=local_folder_resolver(None, dropzone),
    )

    # One connector per org: an org abandoned at its deadline keeps its own connection, which
    # its thread closes when it ends; no SFTP connection outlives its org's pass (a sensor's
    # code server lives long).
    def connector() -> PooledDropzoneConnector:
        return PooledDropzoneConnector(sftp_settings_factory=dropzone.sftp_settings)

    # Every row, enabled or not: a disabled org's folders are compared too (only enabled orgs
    # are processed).
    return processor.run_pass(
        database.connector_configs().list(),
        connector_factory=connector,
        start_after=start_after,
        memory=memory,
        last=last,
    )
