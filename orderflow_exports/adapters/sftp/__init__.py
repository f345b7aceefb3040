"""The dropzone on an SFTP server, over paramiko.

- ``settings``: how sessions connect and transfer (the defaults every deployment starts from).
- ``host_keys``: the configured host keys, checked before any credential is sent; there is no
  trust on first use.
- ``credentials``: private keys and passwords behind an org's secret references.
- ``protocol``: the SFTP v3 packet stream, requests numbered and every reply matched back.
- ``connection``: one SSH transport and its SFTP channel: file requests and pipelined writes.
- ``watchdog``: closes a connection that shows no progress, so every stall ends as TIMEOUT.
- ``connect``: opening a connection (TCP, SSH negotiation, host key check, authentication).
- ``runner``: one connection kept for a run; operations run on it one at a time, and repeated
  once on a new connection when theirs dropped.
- ``folders``: folder entries, the checks before a folder is used, the ack-folder operations.
- ``session``: the ``DropzoneSession`` port over one connection, reused for a whole run.

Nothing is imported here, so that reading the settings does not load paramiko.
"""
