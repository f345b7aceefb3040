"""Shared fixtures: session-scoped servers (sshd, moto S3), databases, embedded environments."""

pytest_plugins = [
    "orderflow_exports_tests.support.databases",
    "orderflow_exports_tests.support.orderflow_env",
    "orderflow_exports_tests.support.sshd",
    "orderflow_exports_tests.support.moto_s3",
]
