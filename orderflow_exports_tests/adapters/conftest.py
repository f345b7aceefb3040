"""The ``ledger`` and ``zone`` fixtures of the ack tests, shared by every ack test module."""

from orderflow_exports_tests.adapters.test_ack_processing import ledger, zone

__all__ = ["ledger", "zone"]
