"""Which connector configs share a server, a login or a run group.

Three rules, each with its own use; they differ on purpose:

- :func:`dropzone_server` is the server a config's folders live on, ``(transport, host, port)``
  with the host normalised (case, trailing dot, IPv6 brackets), so that two orgs' folders on one
  server are checked against each other however their hosts are written. Every local org shares
  one server.
- :func:`endpoint` is the address a session connects to, ``sftp://user@host:port`` or ``local``:
  it names a connection in messages and keys what is done once per connection and folder.
  :func:`login_key` adds the host key and the secret references: orgs share a session, and a
  failed login, only when they log in to the same server the same way.
- :func:`host_tag` is the value of :data:`DROPZONE_HOST_TAG` on a run: the host normalised as in
  :func:`dropzone_server`, port ignored, or ``local``. The per-host run concurrency limit in
  ``dagster.yaml`` keys on it, so every run of one SFTP host counts against one limit whatever
  port or user it uses and however its host is written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orderflow_exports.domain.records import ConnectorConfig

# The tag the per-host run concurrency limit of dagster.yaml keys on; the sensor's runs and
# re-sends carry it.
DROPZONE_HOST_TAG = "orderflow/dropzone_host"
LOCAL_HOST = "local"


def normalised_host(host: str) -> str:
    """A host name as DNS compares it: case, a trailing dot and IPv6 brackets do not count."""
    return host.strip().lower().rstrip(".").strip("[]")


def dropzone_server(config: ConnectorConfig) -> tuple[str, str, int]:
    """The server a config's folders live on: every local org shares one host."""
    if config.transport == "local":
        return ("local", "", 0)
    return ("sftp", normalised_host(config.host or ""), config.port or 22)


def endpoint(config: ConnectorConfig) -> str:
    """Identifies the server a dropzone lives on (one connection per endpoint and run)."""
    if config.transport == "local":
        return "local"
    return f"sftp://{config.username}@{config.host}:{config.port or 22}"


def login_key(config: ConnectorConfig) -> str:
    """A server and the credentials used on it: what one failed login says nothing beyond."""
    return "|".join(
        str(part)
        for part in (endpoint(config), config.host_key, config.private_key_ref, config.password_ref)
    )


def host_tag(config: ConnectorConfig) -> str:
    """The host a run is grouped (and its concurrency limited) by."""
    if config.transport == "sftp" and config.host:
        return normalised_host(config.host) or LOCAL_HOST
    return LOCAL_HOST
