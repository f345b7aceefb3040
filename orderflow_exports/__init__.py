"""orderflow_exports: the Dagster code location exporting approved OrderFlow drafts to dropzones.

``dagster ... -m orderflow_exports`` loads :data:`defs`.
"""

from orderflow_exports.defs.definitions import defs

__all__ = ["defs"]
