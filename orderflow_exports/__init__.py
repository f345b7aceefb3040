"""orderflow_exports: the Dagster code location exporting approved OrderFlow drafts to dropzones.

``dagster ... -m orderflow_exports`` loads :data:`defs`.
"""

# First: the accepted Dagster Preview/Beta warnings are filtered before any definition is built.
import orderflow_exports.quiet_warnings  # noqa: F401, I001
from orderflow_exports.defs.definitions import defs

__all__ = ["defs"]
