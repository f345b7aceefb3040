"""``python -m orderflow_exports.cli``: the same as the ``orderflow-exports`` command."""

from __future__ import annotations

import sys

from orderflow_exports.cli.app import main

sys.exit(main())
