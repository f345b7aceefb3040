"""``orderflow-exports connectors``: set, list, show, test and delete an org's connector config."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from orderflow_exports.cli.common import (
    EXIT_ENVIRONMENT,
    EnvironmentProblem,
    UsageError,
    emit,
    fail,
    local_folders,
    open_engine,
    table,
)
from orderflow_exports.domain.connector_rules import ack_deadline_hours_problem, connector_problems
from orderflow_exports.domain.naming import validate_id
from orderflow_exports.domain.records import ConnectorConfig


def register(groups: Any) -> None:
    """Add the ``connectors`` group."""
    connectors = groups.add_parser("connectors", help="per-org connector config")
    csub = connectors.add_subparsers(dest="cmd", required=True)
    cset = csub.add_parser("set", help="create or replace an org's connector")
    cset.add_argument("--org", required=True)
    cset.add_argument("--transport", choices=["local", "sftp"], required=True)
    cset.add_argument("--export-path", required=True)
    cset.add_argument("--ack-path", required=True)
    cset.add_argument("--host")
    cset.add_argument("--port", type=int)
    cset.add_argument("--username")
    cset.add_argument("--host-key", help="known_hosts line or SHA256: fingerprint")
    cset.add_argument("--private-key-ref", help="env:NAME or file:/path (never the key)")
    cset.add_argument("--password-ref", help="env:NAME or file:/path (never the password)")
    cset.add_argument("--ack-deadline-hours", type=float, default=24.0)
    cset.add_argument("--disabled", action="store_true")
    cset.set_defaults(func=cmd_connectors_set)
    csub.add_parser("list", help="list connectors").set_defaults(func=cmd_connectors_list)
    cshow = csub.add_parser("show", help="one connector in full, and the rules it breaks")
    cshow.add_argument("--org", required=True)
    cshow.set_defaults(func=cmd_connectors_show)
    ctest = csub.add_parser(
        "test", help="connect, list the export and ack folders, write and remove a temp file"
    )
    ctest.add_argument("--org", required=True)
    ctest.set_defaults(func=cmd_connectors_test)
    cdelete = csub.add_parser("delete", help="remove an org's connector (exports are kept)")
    cdelete.add_argument("--org", required=True)
    cdelete.add_argument("--yes", action="store_true", help="really delete it")
    cdelete.set_defaults(func=cmd_connectors_delete)


def connector_from_args(args: argparse.Namespace) -> ConnectorConfig:
    """The config ``connectors set`` was given, checked on its own (no database needed).

    Raises UsageError naming the option and the value; secrets are never quoted (only refs).
    """
    deadline = ack_deadline_hours_problem(args.ack_deadline_hours)
    if deadline:
        raise UsageError(deadline)
    if args.transport == "local":
        given = [name for name in ("host", "port", "username", "host_key") if getattr(args, name)]
        given += [n for n in ("private_key_ref", "password_ref") if getattr(args, n)]
        if given:
            options = ", ".join("--" + name.replace("_", "-") for name in given)
            raise UsageError(f"a local connector takes no {options}")
    try:
        config = ConnectorConfig(
            org_id=args.org,
            transport=args.transport,
            export_path=args.export_path,
            ack_path=args.ack_path,
            enabled=not args.disabled,
            host=args.host,
            port=args.port,
            username=args.username,
            host_key=args.host_key,
            private_key_ref=args.private_key_ref,
            password_ref=args.password_ref,
            ack_deadline_seconds=int(args.ack_deadline_hours * 3600),
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    own = connector_problems(config, [])
    if own:
        raise UsageError(f"connector of {config.org_id} refused: {'; '.join(own)}")
    if config.transport == "sftp":
        from orderflow_exports.adapters.sftp.host_keys import parse_host_keys

        try:
            pins = parse_host_keys(config.host_key)
        except ValueError as exc:
            raise UsageError(f"--host-key: {exc}") from None
        if not pins:
            raise UsageError("--host-key holds no key (a known_hosts line or SHA256: fingerprint)")
    return config


def check_secret_refs(config: ConnectorConfig) -> None:
    """Each secret reference is in the org's scope; a ``file:`` one names a safe, readable file.

    ``env:`` variables are not looked up: they belong to the code location's environment, not
    to the shell running this command.
    """
    from orderflow_exports.adapters.secrets import SecretScope, SecretUnavailable
    from orderflow_exports.defs.settings import resolve_secret_dirs

    try:
        scope = SecretScope(resolve_secret_dirs(None))
    except ValueError as exc:
        raise EnvironmentProblem(str(exc)) from None
    for option, ref in (
        ("--private-key-ref", config.private_key_ref),
        ("--password-ref", config.password_ref),
    ):
        if ref is None:
            continue
        try:
            scope.check(ref, config.org_id, must_exist=True)
        except SecretUnavailable as exc:
            raise UsageError(f"{option}: {exc}") from None


def cmd_connectors_set(args: argparse.Namespace) -> int:
    from orderflow_exports.adapters.sql.connectors import SqlConnectorConfigs

    config = connector_from_args(args)
    check_secret_refs(config)
    configs = SqlConnectorConfigs(open_engine())
    saved = configs.list()
    # Saving refuses a conflict with any row, enabled or not, older or newer.
    problems = connector_problems(config, saved, local=local_folders([config, *saved]))
    if problems:
        raise UsageError(f"connector of {config.org_id} refused: {'; '.join(problems)}")
    configs.upsert(config)
    emit(f"connector of {config.org_id} saved ({config.transport}, enabled={config.enabled})")
    return 0


def cmd_connectors_list(_: argparse.Namespace) -> int:
    from orderflow_exports.adapters.sql.connectors import SqlConnectorConfigs

    configs = SqlConnectorConfigs(open_engine()).list()
    if not configs:
        emit("no connectors")
        return 0
    headers = [
        "org",
        "enabled",
        "transport",
        "endpoint",
        "export_path",
        "ack_path",
        "ack_deadline_h",
        "secret_ref",
    ]
    rows = [
        [
            c.org_id,
            c.enabled,
            c.transport,
            c.endpoint,
            c.export_path,
            c.ack_path,
            c.ack_deadline_seconds / 3600,
            c.private_key_ref or c.password_ref or "",
        ]
        for c in configs
    ]
    emit(table(headers, rows))
    return 0


def _connector(engine: Any, org: str) -> ConnectorConfig:
    from orderflow_exports.adapters.sql.connectors import SqlConnectorConfigs

    validate_id(org, "--org")
    config = SqlConnectorConfigs(engine).get(org)
    if config is None:
        raise UsageError(f"org {org} has no connector (see `orderflow-exports connectors list`)")
    return config


def cmd_connectors_show(args: argparse.Namespace) -> int:
    """One connector in full (secret references only) and the rules it breaks, if any."""
    from orderflow_exports.adapters.sql.connectors import SqlConnectorConfigs

    engine = open_engine()
    config = _connector(engine, args.org)
    others = [c for c in SqlConnectorConfigs(engine).list() if c.org_id != config.org_id]
    for name in (
        "org_id", "enabled", "transport", "endpoint", "export_path", "ack_path", "host_key",
        "private_key_ref", "password_ref", "ack_deadline_seconds", "updated_at",
    ):  # fmt: skip
        emit(f"{name:<21} {getattr(config, name)}")
    problems = connector_problems(
        config, others, local=local_folders([config, *others]), conflicts_with="earlier"
    )
    emit("problems              " + ("; ".join(problems) if problems else "none"))
    return 0


def cmd_connectors_delete(args: argparse.Namespace) -> int:
    from orderflow_exports.adapters.sql.connectors import SqlConnectorConfigs

    engine = open_engine()
    config = _connector(engine, args.org)
    if not args.yes:
        raise UsageError(f"deleting the connector of {config.org_id} needs --yes")
    SqlConnectorConfigs(engine).delete(config.org_id)
    emit(f"connector of {config.org_id} deleted; its exports and files are kept")
    return 0


def cmd_connectors_test(args: argparse.Namespace) -> int:
    """Connect as the export pass does and try each step the exporter needs; exit 1 on a failure."""
    import uuid

    from orderflow_exports.adapters.dropzones import PooledDropzoneConnector
    from orderflow_exports.adapters.secrets import SecretScope
    from orderflow_exports.adapters.sql.connectors import SqlConnectorConfigs
    from orderflow_exports.defs.settings import resolve_secret_dirs
    from orderflow_exports.domain.ack_files import excerpt
    from orderflow_exports.domain.naming import temp_filename

    engine = open_engine()
    config = _connector(engine, args.org)
    others = [c for c in SqlConnectorConfigs(engine).list() if c.org_id != config.org_id]
    try:
        scope = SecretScope(resolve_secret_dirs(None))
    except ValueError as exc:
        raise EnvironmentProblem(str(exc)) from None

    def sftp_settings() -> Any:
        from orderflow_exports.adapters.sftp.settings import SftpSettings

        return SftpSettings(secrets=scope)

    sessions = PooledDropzoneConnector(sftp_settings_factory=sftp_settings)
    # A hidden temp name: the ERP ignores it, and the stale-temp sweep would remove a leftover.
    final_name = f"orderflow-connector-test-{uuid.uuid4().hex}.json"
    probe = temp_filename(final_name)
    state: dict[str, Any] = {}
    problems = connector_problems(
        config, others, local=local_folders([config, *others]), conflicts_with="earlier"
    )

    def rules() -> str:
        if problems:
            raise ValueError("; ".join(problems))
        return "none broken"

    def connect() -> str:
        state["session"] = sessions.session_for(config)
        return config.endpoint

    def listing(folder: str) -> Callable[[], str]:
        return lambda: f"{len(state['session'].list_entries(folder))} entries in {folder}"

    def write() -> str:
        state["session"].write_file(config.export_path, probe, b"{}")
        return f"{config.export_path}/{probe}"

    def remove() -> str:
        if not state["session"].remove_temp(config.export_path, final_name):
            raise ValueError("the test file was not there any more")
        return "removed"

    steps: list[tuple[str, Callable[[], str]]] = [
        ("config rules", rules),
        ("connect (pinned host key, secret reference)", connect),
        ("list export folder", listing(config.export_path)),
        ("list ack folder", listing(config.ack_path)),
        ("write a temp file", write),
        ("remove the temp file", remove),
    ]
    failed = None
    try:
        for name, step in steps:
            try:
                detail = step()
            except Exception as exc:  # noqa: BLE001 - each step reports its own failure
                message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
                code = getattr(exc, "code", None)
                emit(f"FAILED  {name}: {f'[{code}] ' if code else ''}{excerpt(message, 400)}")
                failed = name
                break
            emit(f"ok      {name}: {detail}")
    finally:
        sessions.close()
    if failed:
        return fail(f"connector of {config.org_id} failed at: {failed}", EXIT_ENVIRONMENT)
    return 0
