"""pytest fixtures: a moto S3 server over real HTTP on 127.0.0.1, and a fresh bucket per test.

Register with ``pytest_plugins = ["orderflow_exports_tests.support.moto_s3"]`` (or
``pytest -p orderflow_exports_tests.support.moto_s3``). The server is moto's
``ThreadedMotoServer``, not the in-process ``mock_aws``: requests go through botocore's real HTTP
stack, signing, checksums and retries, as they do against S3 or MinIO.

``moto_s3_process`` starts moto in a separate process instead; use it only when the test measures
the client's own memory, because the threaded server keeps every uploaded byte in this process.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.config import Config

from orderflow_exports_tests.support.network import free_port, wait_listening

REGION = "us-east-1"

# Fake credentials, and the developer's own AWS config kept out, so no test can reach real AWS.
_FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}
_UNSET_ENV = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL_S3")


@dataclass(frozen=True)
class MotoS3Server:
    """A running moto S3 endpoint; ``client()`` builds a boto3 client pointed at it."""

    endpoint_url: str

    def client(self, **config: Any) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=_FAKE_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=_FAKE_ENV["AWS_SECRET_ACCESS_KEY"],
            config=Config(**config) if config else None,
        )


@dataclass(frozen=True)
class S3Bucket:
    """A fresh, empty bucket of its own for one test, with a client to reach it."""

    client: Any
    bucket: str
    endpoint_url: str

    def keys(self) -> list[str]:
        listing = self.client.list_objects_v2(Bucket=self.bucket)
        return sorted(item["Key"] for item in listing.get("Contents", []))

    def pending_uploads(self) -> list[dict[str, Any]]:
        return self.client.list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])


@pytest.fixture(scope="session")
def moto_s3_env() -> Iterator[None]:
    """Fake AWS credentials for the rest of the session; other tests' boto3 calls get them too."""
    patch = pytest.MonkeyPatch()
    for name, value in _FAKE_ENV.items():
        patch.setenv(name, value)
    for name in _UNSET_ENV:
        patch.delenv(name, raising=False)
    yield
    patch.undo()


@pytest.fixture(scope="session")
def moto_s3_server(moto_s3_env: None) -> Iterator[MotoS3Server]:
    """moto's threaded S3 server on 127.0.0.1, on a port the OS picks (no free-port race)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield MotoS3Server(endpoint_url=f"http://{host}:{port}")
    finally:
        server.stop()


@pytest.fixture(scope="session")
def moto_s3_process(moto_s3_env: None) -> Iterator[MotoS3Server]:
    """moto's S3 server in a child process, so this process's memory is the client's alone."""
    process, endpoint_url = _start_moto_process()
    try:
        yield MotoS3Server(endpoint_url=endpoint_url)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def s3_bucket(moto_s3_server: MotoS3Server) -> Iterator[S3Bucket]:
    """A new bucket on the threaded server; emptied and deleted after the test."""
    yield from _fresh_bucket(moto_s3_server)


@pytest.fixture
def s3_process_bucket(moto_s3_process: MotoS3Server) -> Iterator[S3Bucket]:
    """A new bucket on the out-of-process server; emptied and deleted after the test."""
    yield from _fresh_bucket(moto_s3_process)


def _fresh_bucket(server: MotoS3Server) -> Iterator[S3Bucket]:
    client = server.client()
    name = f"test-{uuid.uuid4().hex[:20]}"
    client.create_bucket(Bucket=name)
    try:
        yield S3Bucket(client=client, bucket=name, endpoint_url=server.endpoint_url)
    finally:
        # The server lives for the session and holds objects in memory; free them.
        with contextlib.suppress(Exception):
            _delete_bucket(client, name)


def _delete_bucket(client: Any, name: str) -> None:
    for upload in client.list_multipart_uploads(Bucket=name).get("Uploads", []):
        client.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=name):
        objects = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if objects:
            client.delete_objects(Bucket=name, Delete={"Objects": objects})
    client.delete_bucket(Bucket=name)


def _start_moto_process(attempts: int = 3) -> tuple[subprocess.Popen[bytes], str]:
    # The CLI cannot report an OS-chosen port, so pick a free one and retry if it got taken.
    last_error = ""
    for _ in range(attempts):
        port = free_port()
        # A file, not a pipe: moto logs every request, and a full pipe would stall the server.
        with tempfile.TemporaryFile() as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
            if wait_listening(process, port, timeout=30.0):
                return process, f"http://127.0.0.1:{port}"
            process.kill()
            process.wait()
            log.seek(0)
            last_error = log.read().decode(errors="replace")[-2000:]
    raise RuntimeError(f"moto server process did not start: {last_error}")
