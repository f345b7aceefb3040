"""The ``approved_drafts`` dynamic partitions: one key ``{org_id}:{draft_order_id}`` per draft."""

import dagster as dg

APPROVED_DRAFTS_PARTITIONS_NAME = "approved_drafts"

approved_drafts_partitions = dg.DynamicPartitionsDefinition(name=APPROVED_DRAFTS_PARTITIONS_NAME)

# A backfill ("Failed and missing" over thousands of drafts) is cut into runs of at most this
# many partitions: the size of the sensor's own batches (at most 1,000 drafts per tick, split
# by host), ~15-30 s of run time at Dagster's 30-65 ms per partition, one SFTP session each, and
# a failure re-runs at most this many drafts. One run over every partition would hold all of
# them in one process, one event log and one failure.
MAX_PARTITIONS_PER_BACKFILL_RUN = 500
EXPORT_BACKFILL_POLICY = dg.BackfillPolicy.multi_run(
    max_partitions_per_run=MAX_PARTITIONS_PER_BACKFILL_RUN
)
