"""The ``approved_drafts`` dynamic partitions: one key ``{org_id}:{draft_order_id}`` per draft."""

import dagster as dg

APPROVED_DRAFTS_PARTITIONS_NAME = "approved_drafts"

approved_drafts_partitions = dg.DynamicPartitionsDefinition(name=APPROVED_DRAFTS_PARTITIONS_NAME)
