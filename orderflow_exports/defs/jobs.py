"""``export_drafts_job``, a name people and CI type: keep it."""

import dagster as dg

from orderflow_exports.defs.assets import approved_drafts, export_json
from orderflow_exports.defs.partitions import approved_drafts_partitions

export_drafts_job = dg.define_asset_job(
    name="export_drafts_job",
    selection=dg.AssetSelection.assets(approved_drafts, export_json).without_checks(),
    partitions_def=approved_drafts_partitions,
    description="Validate approved drafts and export them to their orgs' dropzones. Pick a "
    'partition with --tags \'{"dagster/partition": "<org_id>:<draft_order_id>"}\'.',
)
