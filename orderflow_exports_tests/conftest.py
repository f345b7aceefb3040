"""Shared fixtures: session-scoped servers (sshd, moto S3), databases, embedded environments."""

import os

# export_json's step retries wait 2 s, 4 s, 8 s in production; the suite's runs (in-process and
# the daemon's, which inherit this environment) go through the same three retries at a tenth of
# that. Set before anything imports the Definitions, which read it when they are built.
os.environ.setdefault("ORDERFLOW_EXPORT_RETRY_DELAY_SECONDS", "0.2")

pytest_plugins = [
    "orderflow_exports_tests.support.databases",
    "orderflow_exports_tests.support.orderflow_env",
    "orderflow_exports_tests.support.sshd",
    "orderflow_exports_tests.support.moto_s3",
    "orderflow_exports_tests.support.slow_guard",
    "pytester",
]
