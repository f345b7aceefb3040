"""Export stores (the archive of every exported file): a local folder and S3.

Both use the archive-key rule of :mod:`orderflow_exports.domain.naming`
(``archive_key``/``parse_archive_key``) and write a key once.
"""
