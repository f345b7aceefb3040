"""Rules a connector config must satisfy before anything is written or read with it.

Pure functions over :class:`ConnectorConfig`. The same rules run when an operator saves a config
(``orderflow-exports connectors set``) and again at run time, because rows can also be written by
other tools. A config that breaks one only fails its own org.

Folders: the export and ack folders must be absolute, free of ``..`` components and control
characters, and apart from each other: the ack pass moves files out of the ack folder (into its
``processed/`` and ``error/`` subfolders), so an export folder equal to it or nested with it would
lose exported orders; and no two orgs on the same host may share or nest folders, so one org's ack
pass never touches another org's files. A local folder must also be apart from the code
location's own folders (the export store, the spool, the secret folders, ``DAGSTER_HOME``), and
these comparisons are made on real paths too, so a symlink cannot lead the ack pass into the
store or another org's folder. The callers resolve the real paths (this module reads nothing)
and pass them in as :class:`LocalFolders`.

Between orgs, a conflict is decided in favour of the row that was there first (the older
``updated_at``; at equal times the smaller org id): at run time only the newer row is refused,
so a row written later by another tool cannot stop orgs that were working. Saving a config
(``connectors set``) refuses any conflict with any row, enabled or not.

Secrets: an ``env:`` reference must name a variable under the org's own prefix
(``ORDERFLOW_SECRET_<ORG>_``, see :func:`env_secret_prefix`), so a row cannot send another
variable of the code location (cloud credentials, database passwords) to its SFTP server. Where
the folders of ``file:`` references are is a deployment setting, checked where files are read.
"""

from __future__ import annotations

import math
import posixpath
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from orderflow_exports.domain.endpoints import dropzone_server
from orderflow_exports.domain.records import ConnectorConfig

ENV_SECRET_PREFIX = "ORDERFLOW_SECRET_"
ACK_SUBFOLDERS = ("processed", "error")
MIN_PORT, MAX_PORT = 1, 65535
MAX_ACK_DEADLINE_SECONDS = 366 * 24 * 3600
MAX_PATH_LENGTH = 1024
MAX_FIELD_LENGTH = 255
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Host names, IPv4 and IPv6 literals (with or without brackets): nothing that could smuggle a
# second host, a user or a path into a connection target.
_HOST = re.compile(r"(?:[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,251}[A-Za-z0-9_.])?|\[?[0-9A-Fa-f:.]+\]?)")


@dataclass(frozen=True)
class LocalFolders:
    """What the caller found on the local filesystem, for the rules of local connectors.

    ``reserved`` holds the code location's own folders as (what it is, real path), e.g.
    ("the export store", "/var/lib/orderflow/store"); ``real`` maps a configured folder to its
    real path (symlinks resolved). A folder missing from ``real`` is compared as written.
    """

    reserved: tuple[tuple[str, str], ...] = ()
    real: Mapping[str, str] = field(default_factory=dict)
    # The real path of the folder set aside for local dropzones inside the reserved ones (the
    # embedded default, ``$DAGSTER_HOME/orderflow/dropzones``): folders below it are allowed.
    dropzone_home: str | None = None

    def real_path(self, path: str) -> str:
        """``path`` with its symlinks resolved, as far as the caller resolved it."""
        return self.real.get(path, path)


def local_folders_to_resolve(config: ConnectorConfig) -> list[str]:
    """The folders of a local config whose real paths the rules compare (none for SFTP)."""
    if config.transport != "local" or _folder_problems(config):
        return []
    ack = config.ack_path
    return [config.export_path, ack, *(posixpath.join(ack, sub) for sub in ACK_SUBFOLDERS)]


Conflicts = Literal["all", "earlier"]


def connector_problems(
    config: ConnectorConfig,
    others: Iterable[ConnectorConfig],
    *,
    local: LocalFolders | None = None,
    conflicts_with: Conflicts = "all",
) -> list[str]:
    """Human-readable problems of ``config`` (empty when it is fine).

    ``others`` are the configs of the other orgs (it may include ``config`` itself: entries with
    the same ``org_id`` are ignored); they are needed for the rules between orgs: no shared or
    nested folders on one host, no secret reference in another org's scope. With
    ``conflicts_with="earlier"`` (run time) only the orgs whose rows were there before this one
    count (see :func:`precedes`); ``"all"`` (saving a config) counts every row.

    ``local`` (for a local connector) holds the code location's folders and resolved real
    paths; without it those comparisons are skipped.
    """
    others = [other for other in others if other.org_id != config.org_id]
    if conflicts_with == "earlier":
        others = [other for other in others if precedes(other, config)]
    problems: list[str] = []
    problems += _folder_problems(config)
    if config.transport == "sftp":
        problems += _sftp_problems(config)
    problems += _deadline_problems(config)
    for field_name in ("private_key_ref", "password_ref"):
        ref = getattr(config, field_name)
        if ref is not None:
            problems += [
                f"{field_name}: {problem}" for problem in secret_ref_problems(ref, config.org_id)
            ]
    problems += _env_scope_conflicts(config, others)
    problems += _shared_folder_problems(config, others, local)
    if local is not None:
        problems += _reserved_folder_problems(config, local)
    return problems


def precedes(first: ConnectorConfig, second: ConnectorConfig) -> bool:
    """``first``'s row was there before ``second``'s: older ``updated_at``, then org id.

    A row never saved (no ``updated_at``) comes after every saved one.
    """
    return _age_key(first) < _age_key(second)


def _age_key(config: ConnectorConfig) -> tuple[bool, float, str]:
    saved = config.updated_at
    return (saved is None, saved.timestamp() if saved is not None else 0.0, config.org_id)


# --- folders -----------------------------------------------------------------------------------


def path_problems(field_name: str, value: str | None) -> list[str]:
    """Problems of one folder setting on its own: empty, relative, ``..``, control characters."""
    if value is None or not value.strip():
        return [f"{field_name} is empty; give an absolute folder such as /inbound/orders"]
    problems: list[str] = []
    if has_control_characters(value):
        problems.append(f"{field_name} {value!r} contains control characters")
    if not value.startswith("/"):
        problems.append(
            f"{field_name} {value!r} is not absolute (a relative folder would depend on the "
            "working directory or the SFTP login's home)"
        )
    if ".." in value.split("/"):
        problems.append(f"{field_name} {value!r} has a '..' component")
    if len(value) > MAX_PATH_LENGTH:
        problems.append(f"{field_name} is longer than {MAX_PATH_LENGTH} characters")
    return problems


def path_parts(value: str) -> tuple[str, ...]:
    """The components of an absolute folder, without empty and ``.`` ones (``/a//b/.`` = a, b)."""
    return tuple(part for part in value.split("/") if part not in ("", "."))


def _within(inner: tuple[str, ...], outer: tuple[str, ...]) -> bool:
    """``inner`` is ``outer`` or lies below it."""
    return inner[: len(outer)] == outer


def _overlap(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    return _within(a, b) or _within(b, a)


def _folder_problems(config: ConnectorConfig) -> list[str]:
    problems = path_problems("export_path", config.export_path)
    problems += path_problems("ack_path", config.ack_path)
    if problems:
        return problems
    export, ack = path_parts(config.export_path), path_parts(config.ack_path)
    if export == ack:
        return [
            f"export_path and ack_path are the same folder ({config.export_path!r}): the ack "
            "pass would move exported orders out of the dropzone"
        ]
    if _within(export, ack):
        below = export[len(ack)] if len(export) > len(ack) else ""
        why = (
            f"it is the ack pass's {below}/ folder"
            if below in ACK_SUBFOLDERS
            else "the ack pass works in that tree"
        )
        return [
            f"export_path {config.export_path!r} lies inside ack_path {config.ack_path!r} "
            f"({why}); use folders apart from each other"
        ]
    if _within(ack, export):
        return [
            f"ack_path {config.ack_path!r} lies inside export_path {config.export_path!r}; "
            "use folders apart from each other"
        ]
    return []


def _my_folders(config: ConnectorConfig, local: LocalFolders | None) -> list[tuple[str, str, str]]:
    """(field, folder as written, real folder) of ``config``; real = written without ``local``."""
    resolve = local.real_path if local is not None and config.transport == "local" else str
    folders = [
        ("export_path", config.export_path, resolve(config.export_path)),
        ("ack_path", config.ack_path, resolve(config.ack_path)),
    ]
    if local is not None and config.transport == "local":
        # The ack pass moves files into these: a symlink there must not lead elsewhere either.
        for sub in ACK_SUBFOLDERS:
            written = posixpath.join(config.ack_path, sub)
            folders.append((f"ack_path's {sub}/", written, resolve(written)))
    return folders


def _shared_folder_problems(
    config: ConnectorConfig, others: list[ConnectorConfig], local: LocalFolders | None
) -> list[str]:
    if _folder_problems(config):
        return []
    host = dropzone_server(config)
    mine = _my_folders(config, local)
    problems: list[str] = []
    for other in others:
        if dropzone_server(other) != host:
            continue
        theirs = [
            entry
            for entry in _my_folders(other, local)
            if entry[1] and entry[1].startswith("/") and not entry[0].startswith("ack_path's")
        ]
        for my_field, my_path, my_real in mine:
            for their_field, their_path, their_real in theirs:
                relation = _relation(path_parts(my_path), path_parts(their_path))
                real_relation = _relation(path_parts(my_real), path_parts(their_real))
                if relation is None and real_relation is None:
                    continue
                if relation is None:
                    relation = f"{real_relation} (through symlinks: {my_real!r} and {their_real!r})"
                problems.append(
                    f"{my_field} {my_path!r} {relation} org {other.org_id}'s {their_field} "
                    f"{their_path!r} on the same host ({_host_label(host)}); every org "
                    "needs folders of its own"
                )
    return problems


def _relation(a: tuple[str, ...], b: tuple[str, ...]) -> str | None:
    if a == b:
        return "is"
    return "is nested with" if _overlap(a, b) else None


def _set_aside(folder: str, reserved: str, dropzone_home: str | None) -> bool:
    """``folder`` lies below the dropzone home, which itself lies inside ``reserved``."""
    if dropzone_home is None:
        return False
    home = path_parts(dropzone_home)
    mine = path_parts(folder)
    return len(mine) > len(home) and _within(mine, home) and _within(home, path_parts(reserved))


def _reserved_folder_problems(config: ConnectorConfig, local: LocalFolders) -> list[str]:
    """A local folder must be apart from the export store, the spool, secrets, DAGSTER_HOME."""
    if config.transport != "local" or _folder_problems(config):
        return []
    problems: list[str] = []
    mine = _my_folders(config, local)
    for label, reserved in local.reserved:
        for my_field, my_path, my_real in mine:
            relation = _relation(path_parts(my_real), path_parts(reserved))
            if relation is None or _set_aside(my_real, reserved, local.dropzone_home):
                continue
            really = "" if my_real == my_path else f" (really {my_real!r})"
            problems.append(
                f"{my_field} {my_path!r}{really} {relation} {label} {reserved!r}; a dropzone "
                "folder must be apart from the code location's own folders"
            )
            break  # one problem per reserved folder is enough to act on
    # The ack pass moves files out of ack_path: through symlinks it must not reach the exports.
    export_real = local.real_path(config.export_path)
    ack_real = local.real_path(config.ack_path)
    if _overlap(path_parts(export_real), path_parts(ack_real)) and (
        export_real != config.export_path or ack_real != config.ack_path
    ):
        problems.append(
            f"export_path {config.export_path!r} and ack_path {config.ack_path!r} are the same "
            f"or nested folders through symlinks ({export_real!r}, {ack_real!r}); use folders "
            "apart from each other"
        )
    return problems


def _host_label(host: tuple[str, str, int]) -> str:
    return "local" if host[0] == "local" else f"sftp {host[1]}:{host[2]}"


# --- SFTP endpoint -----------------------------------------------------------------------------


def _sftp_problems(config: ConnectorConfig) -> list[str]:
    problems: list[str] = []
    host = config.host or ""
    if not _HOST.fullmatch(host):
        shown = host if not has_control_characters(host) else host.encode("unicode_escape")
        problems.append(f"host {shown!r} is not a host name or IP address")
    port = config.port
    if port is not None and not (
        isinstance(port, int) and not isinstance(port, bool) and MIN_PORT <= port <= MAX_PORT
    ):
        problems.append(f"port {port!r} is not between {MIN_PORT} and {MAX_PORT}")
    host_key = config.host_key or ""
    if has_control_characters(host_key.replace("\r", "").replace("\n", "").replace("\t", "")):
        problems.append("host_key contains control characters")
    username = config.username or ""
    if has_control_characters(username) or any(c.isspace() for c in username):
        problems.append(f"username {username!r} contains spaces or control characters")
    if len(username) > MAX_FIELD_LENGTH:
        problems.append(f"username is longer than {MAX_FIELD_LENGTH} characters")
    return problems


def _deadline_problems(config: ConnectorConfig) -> list[str]:
    seconds = config.ack_deadline_seconds
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int)
        or not 1 <= seconds <= MAX_ACK_DEADLINE_SECONDS
    ):
        return [
            f"ack_deadline_seconds {seconds!r} is not between 1 and {MAX_ACK_DEADLINE_SECONDS} "
            f"({MAX_ACK_DEADLINE_SECONDS // 3600} hours)"
        ]
    return []


def ack_deadline_hours_problem(hours: float) -> str | None:
    """Why ``hours`` cannot be an ack deadline (not finite, not positive, too long), or None."""
    if not math.isfinite(hours):
        return f"--ack-deadline-hours {hours!r} is not a number of hours"
    if not 0 < hours * 3600 <= MAX_ACK_DEADLINE_SECONDS or int(hours * 3600) < 1:
        return (
            f"--ack-deadline-hours {hours:g} is not between 1 second and "
            f"{MAX_ACK_DEADLINE_SECONDS // 3600} hours"
        )
    return None


# --- secret references -------------------------------------------------------------------------


def env_secret_prefix(org_id: str) -> str:
    """The prefix of the environment variables org ``org_id`` may name: ``ORDERFLOW_SECRET_ACME_``.

    The org id is upper-cased and ``-`` becomes ``_`` (variable names cannot hold ``-``).
    """
    return f"{ENV_SECRET_PREFIX}{org_id.upper().replace('-', '_')}_"


def secret_ref_problems(ref: str, org_id: str) -> list[str]:
    """Problems of one secret reference on its own (syntax and the org's ``env:`` scope)."""
    scheme, sep, target = ref.partition(":")
    if not sep or scheme not in ("env", "file"):
        return ["expected 'env:NAME' or 'file:/path' (a reference, never the secret itself)"]
    if scheme == "env":
        if not _ENV_NAME.fullmatch(target):
            return [f"'env:' needs a variable name ([A-Za-z_][A-Za-z0-9_]*), got {target!r}"]
        prefix = env_secret_prefix(org_id)
        if not target.startswith(prefix) or len(target) == len(prefix):
            return [
                f"environment variable {target} is outside org {org_id}'s secret scope: "
                f"names must start with {prefix} (e.g. {prefix}SFTP_PASSWORD)"
            ]
        return []
    if not target:
        return ["'file:' needs an absolute path"]
    if has_control_characters(target):
        return ["the file path contains control characters"]
    if not target.startswith("/"):
        return [f"file reference {target!r} is not an absolute path"]
    if ".." in target.split("/"):
        return [f"file reference {target!r} has a '..' component"]
    if len(target) > MAX_PATH_LENGTH:
        return [f"file reference is longer than {MAX_PATH_LENGTH} characters"]
    if posixpath.basename(target.rstrip("/")) == "" or target.endswith("/"):
        return [f"file reference {target!r} names a folder, not a file"]
    return []


def _env_target(ref: str | None) -> str | None:
    if ref is None:
        return None
    scheme, _, target = ref.partition(":")
    return target if scheme == "env" else None


def env_owner(name: str, org_ids: Iterable[str]) -> list[str]:
    """The orgs whose scope ``name`` falls in most specifically (longest prefix), all tied ones.

    ``ORDERFLOW_SECRET_ACME_SFTP_KEY`` matches both org ``acme`` and org ``acme-sftp``; it
    belongs to ``acme-sftp``, the longer prefix, so ``acme`` cannot reach that org's secret.
    """
    matching = [
        (len(env_secret_prefix(org)), org)
        for org in org_ids
        if name.startswith(env_secret_prefix(org)) and len(name) > len(env_secret_prefix(org))
    ]
    if not matching:
        return []
    longest = max(length for length, _ in matching)
    return sorted(org for length, org in matching if length == longest)


def _env_scope_conflicts(config: ConnectorConfig, others: list[ConnectorConfig]) -> list[str]:
    org_ids = [config.org_id, *(other.org_id for other in others)]
    problems: list[str] = []
    for field_name in ("private_key_ref", "password_ref"):
        name = _env_target(getattr(config, field_name))
        if name is None or secret_ref_problems(f"env:{name}", config.org_id):
            continue
        owners = env_owner(name, org_ids)
        if owners != [config.org_id]:
            named = ", ".join(o for o in owners if o != config.org_id)
            problems.append(
                f"{field_name}: environment variable {name} is in the scope of org {named} "
                "too; use a name only this org's prefix matches"
            )
    for other in others:
        for field_name in ("private_key_ref", "password_ref"):
            name = _env_target(getattr(other, field_name))
            if name is None or not name.startswith(env_secret_prefix(config.org_id)):
                continue
            if config.org_id in env_owner(name, org_ids):
                problems.append(
                    f"org {other.org_id}'s {field_name} env:{name} falls in org "
                    f"{config.org_id}'s secret scope ({env_secret_prefix(config.org_id)}); one "
                    "of them must be renamed"
                )
    return problems


def has_control_characters(value: str) -> bool:
    """Control, format, line and paragraph separator characters (a newline, NUL, U+2028, ...)."""
    return any(unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp") for char in value)
