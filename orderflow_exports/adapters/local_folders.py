"""Real paths of local dropzone folders and of the code location's own folders.

The connector rules compare folders without reading the filesystem; this module resolves the
symlinks for them, once per run (or per ``connectors set``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from orderflow_exports.domain.connector_rules import LocalFolders, local_folders_to_resolve
from orderflow_exports.domain.records import ConnectorConfig


def real_path(path: str) -> str:
    """``path`` with every symlink resolved (a missing tail is kept as written)."""
    try:
        return os.path.realpath(path)
    except (OSError, ValueError):
        return path


def resolve_local_folders(
    configs: Iterable[ConnectorConfig],
    reserved: Iterable[tuple[str, str]],
    dropzone_home: str | None = None,
) -> LocalFolders:
    """The real paths of every local config's folders and of the ``reserved`` ones.

    ``reserved`` holds (what it is, folder), e.g. ("the export store", "/var/lib/store");
    ``dropzone_home`` is a folder inside them set aside for local dropzones.
    """
    real: dict[str, str] = {}
    for config in configs:
        for folder in local_folders_to_resolve(config):
            if folder not in real:
                real[folder] = real_path(folder)
    resolved = tuple((label, real_path(os.path.abspath(folder))) for label, folder in reserved)
    home = real_path(os.path.abspath(dropzone_home)) if dropzone_home else None
    return LocalFolders(reserved=resolved, real=real, dropzone_home=home)
