"""The ack loop in Dagster: ``erp_ack_sensor``, ``process_acks_job`` and the ``erp_ack`` check.

Wiring only: the pass itself is ``application.acks.processor.AckProcessor``. ``resource`` holds
its bounds and the pass the sensor and the job share, ``events`` maps its results to asset
events; ``sensor``, ``job`` and ``check`` are the Dagster objects.
"""

from typing import Any

from orderflow_exports.defs.acks.check import erp_ack
from orderflow_exports.defs.acks.job import process_acks_job
from orderflow_exports.defs.acks.resource import ACK_PROCESSING_RESOURCE_KEY, AckProcessingResource
from orderflow_exports.defs.acks.sensor import erp_ack_sensor

# What the Definitions take from the ack loop.
ack_sensors = [erp_ack_sensor]
ack_jobs = [process_acks_job]
ack_asset_checks = [erp_ack]
ack_resources: dict[str, Any] = {ACK_PROCESSING_RESOURCE_KEY: AckProcessingResource()}
