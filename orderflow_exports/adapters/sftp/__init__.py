"""The dropzone on an SFTP server, over paramiko.

- ``settings``: how sessions connect and transfer (the defaults every deployment starts from).
- ``host_keys``: the configured host keys, checked before any credential is sent; there is no
  trust on first use.
- ``credentials``: private keys and passwords behind an org's secret references.
- ``protocol``: the SFTP v3 packet stream with requests numbered and every reply matched back.
- ``connection``: one SSH transport and its SFTP channel: file requests and pipelined writes.
- ``watchdog``: closes a connection that shows no progress, so every stall ends as TIMEOUT.
- ``connect``: opening a connection (TCP, SSH negotiation, host key check, authentication).
- ``folders``: folder entries and the folder checks the ack operations need.
- ``session``: the ``DropzoneSession`` port over one connection, reused for a whole run.

Nothing is imported here, so that reading the settings does not load paramiko.
"""
