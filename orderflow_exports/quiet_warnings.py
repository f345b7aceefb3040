"""The Dagster Preview/Beta warnings this code location accepts, silenced in one place.

Imported first by ``orderflow_exports/__init__.py`` (every Dagster process loading the code
location: daemon, webserver, code server, ``dagster job execute``) and by the CLI, so the
filters are in place before any of our definitions are built.

Accepted, and why:
- ``BetaWarning`` for ``backfill_policy`` on ``@asset``: single-run backfills are how a backfill
  of thousands of drafts stays one run per batch; the parameter has been stable for us on the
  pinned Dagster version.
- ``PreviewWarning`` for ``partitions_def`` on an asset check: ``erp_ack`` is evaluated per
  draft partition; its known UI limits are described in the README ("What the UI shows").

Only these messages are filtered (by message text and category), so any other Preview or Beta
feature that appears later still warns.
"""

import warnings

ACCEPTED_WARNINGS: tuple[tuple[str, str], ...] = (
    ("BetaWarning", r"Parameter `backfill_policy` of function `asset` is currently in beta"),
    ("PreviewWarning", r"Specifying a partitions_def on an AssetCheckSpec is currently in preview"),
)


def install() -> None:
    """Add the filters (idempotent: ``warnings`` ignores an identical filter already present)."""
    # Importing dagster's warning classes here would cost the CLI its fast start; the filters
    # match on the message, and the category name is checked by the test instead.
    for _category, message in ACCEPTED_WARNINGS:
        warnings.filterwarnings("ignore", message=message)


install()
