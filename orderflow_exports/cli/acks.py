"""``orderflow-exports acks errors``: each org's refused acks, parked in ``<ack_path>/error/``."""

from __future__ import annotations

import argparse
from typing import Any

from orderflow_exports.cli.common import (
    EXIT_ENVIRONMENT,
    EnvironmentProblem,
    UsageError,
    check_limit,
    emit,
    fail,
    local_folders,
    open_engine,
)
from orderflow_exports.domain.connector_rules import LocalFolders, connector_problems
from orderflow_exports.domain.naming import validate_id
from orderflow_exports.domain.records import ConnectorConfig


def register(groups: Any) -> None:
    """Add the ``acks`` group."""
    acks = groups.add_parser("acks", help="ack files in the ERP dropzones")
    asub = acks.add_subparsers(dest="cmd", required=True)
    aerrors = asub.add_parser(
        "errors", help="refused acks in each enabled org's <ack_path>/error/, with the reason"
    )
    aerrors.add_argument("--org", help="only this org (also when its connector is disabled)")
    aerrors.add_argument("--limit", type=int, default=50, help="files shown per org")
    aerrors.set_defaults(func=cmd_acks_errors)


# Notes beside parked acks are ours and small; anything larger was not written by us.
MAX_ERROR_NOTE_BYTES = 2048


class _OrgUnavailable(Exception):
    """One org's error folder cannot be listed; the command goes on with the other orgs."""


def _note_summary(note: bytes) -> str:
    """``code: reason (rejected at)`` from a note we wrote, escaped; the note as a glimpse
    when it does not hold those lines (someone on the ERP's side may have changed it)."""
    from orderflow_exports.domain.ack_files import excerpt

    fields: dict[str, str] = {}
    for line in note.decode("utf-8", errors="replace").splitlines():
        name, sep, value = line.partition(": ")
        if sep and name in ("code", "reason", "rejected at"):
            fields[name] = value
    if "code" not in fields and "reason" not in fields:
        return "note: " + excerpt(note.decode("utf-8", errors="replace"), 300)
    summary = f"{excerpt(fields.get('code', '?'), 40)}: {excerpt(fields.get('reason', ''), 300)}"
    if "rejected at" in fields:
        summary += f" (rejected at {excerpt(fields['rejected at'], 40)})"
    return summary


def _error_folder_listing(
    config: ConnectorConfig,
    others: list[ConnectorConfig],
    sessions: Any,
    limit: int,
    local: LocalFolders,
) -> list[str]:
    """The lines for one org's ``<ack_path>/error/``; raises _OrgUnavailable."""
    import posixpath

    from orderflow_exports.application.acks.folder import ERROR, ERROR_NOTE_SUFFIX
    from orderflow_exports.domain.ack_files import excerpt
    from orderflow_exports.domain.errors import ExportError

    org = config.org_id
    # A folder shared with another org would show that org's files: refused, as the ack pass does.
    problems = connector_problems(config, others, local=local, conflicts_with="earlier")
    if problems:
        raise _OrgUnavailable("connector config refused: " + "; ".join(problems))
    folder = posixpath.join(config.ack_path, ERROR)
    try:
        session = sessions.session_for(config)
        ack_entries = session.list_entries(config.ack_path)
        found = next((e for e in ack_entries if e.name == ERROR), None)
        if found is None:
            return [f"{org}: no rejected acks ({folder}/ does not exist yet)"]
        if found.kind != "dir":
            raise _OrgUnavailable(f"{folder} is a {found.kind}, not a folder; not reading it")
        entries = session.list_entries(folder)
    except ExportError as exc:
        sessions.discard(config)
        raise _OrgUnavailable(f"[{exc.code}] {exc.message}") from None
    by_name = {e.name: e for e in entries}
    parked = [e for e in entries if not e.name.endswith(ERROR_NOTE_SUFFIX)]
    parked.sort(key=lambda e: (-(e.mtime or 0.0), e.name))  # newest first
    if not parked:
        return [f"{org}: no rejected acks in {folder}/"]
    lines = [f"{org}: {len(parked)} rejected ack(s) in {folder}/, newest first"]
    for entry in parked[:limit]:
        shown = excerpt(entry.name, 120)
        if entry.kind != "file":
            lines.append(f"  {shown}  (a {entry.kind}, not a parked ack; not read)")
            continue
        note = by_name.get(entry.name + ERROR_NOTE_SUFFIX)
        if note is None:
            lines.append(f"  {shown}  (no note beside it)")
        elif note.kind != "file":
            lines.append(f"  {shown}  (its note is a {note.kind}; not read)")
        elif note.size is not None and note.size > MAX_ERROR_NOTE_BYTES:
            lines.append(f"  {shown}  (its note is over {MAX_ERROR_NOTE_BYTES} bytes; not shown)")
        else:
            try:
                text = session.read_file(folder, note.name, MAX_ERROR_NOTE_BYTES)
            except ExportError as exc:
                if exc.transient:
                    sessions.discard(config)
                    raise _OrgUnavailable(f"[{exc.code}] {exc.message}") from None
                lines.append(f"  {shown}  (its note cannot be read: {excerpt(exc.message)})")
                continue
            lines.append(f"  {shown}  {_note_summary(text)}")
    if len(parked) > limit:
        lines.append(f"  ... and {len(parked) - limit} more (raise --limit to see them)")
    return lines


def cmd_acks_errors(args: argparse.Namespace) -> int:
    """List each org's refused acks (``<ack_path>/error/``) with the reason noted beside them."""
    from orderflow_exports.adapters.dropzones import PooledDropzoneConnector
    from orderflow_exports.adapters.secrets import SecretScope
    from orderflow_exports.adapters.sql.connectors import SqlConnectorConfigs
    from orderflow_exports.defs.settings import resolve_secret_dirs
    from orderflow_exports.domain.ack_files import excerpt

    check_limit(args.limit)
    if args.org is not None:
        validate_id(args.org, "--org")
    configs = SqlConnectorConfigs(open_engine()).list()
    enabled = [c for c in configs if c.enabled]
    if args.org is not None:
        chosen = [c for c in configs if c.org_id == args.org]
        if not chosen:
            raise UsageError(
                f"org {args.org} has no connector (see `orderflow-exports connectors list`)"
            )
    else:
        chosen = enabled
    if not chosen:
        emit("no enabled connectors")
        return 0
    try:
        scope = SecretScope(resolve_secret_dirs(None))
    except ValueError as exc:
        raise EnvironmentProblem(str(exc)) from None

    # The same sessions the ack pass opens: pinned host keys, secrets from the org's scope.
    def sftp_settings() -> Any:
        # Imported only when an org uses SFTP: local-only setups never load paramiko.
        from orderflow_exports.adapters.sftp.settings import SftpSettings

        return SftpSettings(secrets=scope)

    sessions = PooledDropzoneConnector(sftp_settings_factory=sftp_settings)
    unavailable: list[str] = []
    try:
        local = local_folders(configs)
        for config in chosen:
            # Every row, enabled or not, as the ack pass compares them.
            others = [c for c in configs if c.org_id != config.org_id]
            try:
                lines = _error_folder_listing(config, others, sessions, args.limit, local)
            except _OrgUnavailable as exc:
                lines = [f"{config.org_id}: cannot list its error folder: {excerpt(str(exc), 400)}"]
                unavailable.append(config.org_id)
            except Exception as exc:  # noqa: BLE001 - one org's fault must not hide the others
                sessions.discard(config)
                lines = [
                    f"{config.org_id}: cannot list its error folder: unexpected "
                    f"{type(exc).__name__}: {excerpt(str(exc), 300)}"
                ]
                unavailable.append(config.org_id)
            for line in lines:
                emit(line)
    finally:
        sessions.close()
    if unavailable:
        return fail(
            f"the error folders of {len(unavailable)} org(s) could not be listed: "
            + ", ".join(unavailable),
            EXIT_ENVIRONMENT,
        )
    return 0
