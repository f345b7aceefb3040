"""``orderflow-exports``: the operator's command line (database, connectors, exports, demo).

One module per command group (``connectors``, ``exports``, ``acks``, ``basics`` for ``db``,
``demo`` and ``schema``), each with a ``register`` that adds its parser; ``app`` builds the
parser and runs a command.
"""

from __future__ import annotations

from orderflow_exports.cli.app import main

__all__ = ["main"]
