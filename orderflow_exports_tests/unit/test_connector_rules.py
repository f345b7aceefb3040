"""The connector rules: folders apart, one org per folder and host, secrets in the org's scope."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from orderflow_exports.domain.connector_rules import (
    MAX_ACK_DEADLINE_SECONDS,
    LocalFolders,
    ack_deadline_hours_problem,
    connector_problems,
    env_owner,
    env_secret_prefix,
    precedes,
)
from orderflow_exports.domain.records import ConnectorConfig

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOd0WT1QHGjVXqyLjc2ld2o4hOrpsfRskKL2mdq9yp4m"


def local(org_id: str = "acme", **overrides: Any) -> ConnectorConfig:
    values: dict[str, Any] = {
        "org_id": org_id,
        "transport": "local",
        "export_path": f"/dz/{org_id}/outbox",
        "ack_path": f"/dz/{org_id}/acks",
    }
    values.update(overrides)
    return ConnectorConfig(**values)


def sftp(org_id: str = "acme", **overrides: Any) -> ConnectorConfig:
    values: dict[str, Any] = {
        "org_id": org_id,
        "transport": "sftp",
        "export_path": "/inbound/orders",
        "ack_path": "/outbound/acks",
        "host": "erp.example.com",
        "port": 22,
        "username": "orderflow",
        "host_key": KEY,
        "private_key_ref": f"env:{env_secret_prefix(org_id)}SFTP_KEY",
    }
    values.update(overrides)
    return ConnectorConfig(**values)


def only(problems: list[str]) -> str:
    assert len(problems) == 1, problems
    return problems[0]


def test_a_sound_config_has_no_problems() -> None:
    assert connector_problems(local(), []) == []
    assert connector_problems(sftp(), []) == []
    assert connector_problems(sftp(password_ref="file:/run/secrets/acme/password"), []) == []


def test_others_may_include_the_config_itself() -> None:
    config = local()
    assert connector_problems(config, [config, replace(config, enabled=False)]) == []


@pytest.mark.parametrize("field", ["export_path", "ack_path"])
@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("", "is empty"),
        ("   ", "is empty"),
        ("relative/orders", "not absolute"),
        ("./orders", "not absolute"),
        ("/dz/../etc", "'..' component"),
        ("/dz/..", "'..' component"),
        ("/dz/in\nbox", "control characters"),
        ("/dz/in\x00box", "control characters"),
        ("/dz/in\u2028box", "control characters"),
        ("/" + "a" * 2000, "longer than"),
    ],
)
def test_bad_folders_are_refused_naming_the_field(field: str, value: str, says: str) -> None:
    problem = only(connector_problems(local(**{field: value}), []))
    assert problem.startswith(field) and says in problem


@pytest.mark.parametrize(
    ("export_path", "ack_path", "says"),
    [
        ("/dz/a", "/dz/a", "the same folder"),
        ("/dz/a/", "/dz//a/.", "the same folder"),
        ("/dz/acks/processed", "/dz/acks", "processed/ folder"),
        ("/dz/acks/error", "/dz/acks", "error/ folder"),
        ("/dz/acks/deeper/orders", "/dz/acks", "lies inside ack_path"),
        ("/dz/out", "/dz/out/acks", "ack_path '/dz/out/acks' lies inside export_path"),
        ("/", "/acks", "lies inside"),
        ("/orders", "/", "lies inside ack_path"),
    ],
)
def test_export_and_ack_folders_must_be_apart(export_path: str, ack_path: str, says: str) -> None:
    problem = only(connector_problems(local(export_path=export_path, ack_path=ack_path), []))
    assert says in problem


def test_siblings_with_a_common_prefix_are_apart() -> None:
    assert connector_problems(local(export_path="/dz/acks2", ack_path="/dz/acks"), []) == []


@pytest.mark.parametrize(
    ("mine", "theirs"),
    [
        ({"ack_path": "/shared/acks"}, {"ack_path": "/shared/acks"}),
        ({"ack_path": "/shared/acks"}, {"export_path": "/shared/acks"}),
        ({"export_path": "/dz/globex/outbox/acme"}, {}),  # inside globex's export folder
        ({"export_path": "/elsewhere/out", "ack_path": "/dz"}, {}),  # globex's inside mine
    ],
)
def test_two_local_orgs_never_share_or_nest_folders(
    mine: dict[str, str], theirs: dict[str, str]
) -> None:
    other = local("globex", **theirs)
    problems = connector_problems(local("acme", **mine), [other])
    assert problems and all("org globex's" in p and "same host (local)" in p for p in problems)


def test_sftp_orgs_share_folders_only_on_different_servers() -> None:
    other = sftp("globex")
    assert connector_problems(sftp("acme"), [other])  # same host and port, same folders
    assert connector_problems(sftp("acme", host="ERP.example.com."), [other])  # same host
    assert connector_problems(sftp("acme", port=None), [other])  # 22 is the default
    assert connector_problems(sftp("acme", port=2222), [other]) == []
    assert connector_problems(sftp("acme", host="erp.other.example"), [other]) == []
    # a local folder and an SFTP folder of the same name are on different machines
    assert connector_problems(local("acme", export_path="/inbound/orders"), [other]) == []


def test_a_disabled_org_keeps_its_folders() -> None:
    other = local("globex", enabled=False, ack_path="/dz/acme/acks")
    assert "org globex's ack_path" in only(connector_problems(local("acme"), [other]))


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"port": 99999}, "port 99999 is not between 1 and 65535"),
        ({"port": 0}, "port 0"),
        ({"port": -5}, "port -5"),
        ({"host": "erp.example.com\nProxyCommand x"}, "not a host name"),
        ({"host": "erp example.com"}, "not a host name"),
        ({"host": "user@erp"}, "not a host name"),
        ({"host": "erp/path"}, "not a host name"),
        ({"username": "order flow"}, "username"),
        ({"username": "u\r\n"}, "username"),
        ({"ack_deadline_seconds": MAX_ACK_DEADLINE_SECONDS + 1}, "ack_deadline_seconds"),
    ],
)
def test_sftp_endpoint_values_are_checked(overrides: dict[str, Any], says: str) -> None:
    assert says in only(connector_problems(sftp(**overrides), []))


@pytest.mark.parametrize("host", ["10.0.0.5", "::1", "[2001:db8::1]", "erp-1.example.com", "erp"])
def test_host_names_and_addresses_are_accepted(host: str) -> None:
    assert connector_problems(sftp(host=host), []) == []


@pytest.mark.parametrize(
    ("hours", "refused"),
    [(24.0, False), (0.5, False), (8784, False), (float("inf"), True), (float("nan"), True)]
    + [(1e6, True), (0, True), (-1, True), (1e-5, True), (float("-inf"), True)],
)
def test_ack_deadline_hours(hours: float, refused: bool) -> None:
    assert (ack_deadline_hours_problem(hours) is not None) is refused


@pytest.mark.parametrize(
    ("ref", "says"),
    [
        ("env:AWS_SECRET_ACCESS_KEY", "outside org acme's secret scope"),
        ("env:DAGSTER_PG_PASSWORD", "outside org acme's secret scope"),
        ("env:ORDERFLOW_SECRET_GLOBEX_KEY", "must start with ORDERFLOW_SECRET_ACME_"),
        ("env:ORDERFLOW_SECRET_ACME_", "outside org acme's secret scope"),
        ("env:", "needs a variable name"),
        ("env:A-B", "needs a variable name"),
        ("env:ORDERFLOW_SECRET_ACME_K\n", "needs a variable name"),
        ("file:", "needs an absolute path"),
        ("file:relative/key", "not an absolute path"),
        ("file:/run/secrets/acme/../globex/key", "'..' component"),
        ("file:/run/secrets/acme/\x07key", "control characters"),
        ("file:/run/secrets/acme/", "names a folder"),
        ("hunter2", "never the secret itself"),
        ("vault:acme/key", "expected 'env:NAME' or 'file:/path'"),
    ],
)
def test_secret_references_are_checked_and_scoped_to_the_org(ref: str, says: str) -> None:
    problem = only(connector_problems(_with_ref(sftp(), ref), []))
    assert problem.startswith("private_key_ref: ") and says in problem


def _with_ref(config: ConnectorConfig, ref: str) -> ConnectorConfig:
    # ConnectorConfig itself refuses a ref without a scheme; rows written by other tools may
    # still hold one, so the rule is checked on a config built around that check.
    values = {name: getattr(config, name) for name in config.__dataclass_fields__}
    built = object.__new__(ConnectorConfig)
    for name, value in {**values, "private_key_ref": ref}.items():
        object.__setattr__(built, name, value)
    return built


def test_the_org_prefix_maps_dashes_and_case() -> None:
    assert env_secret_prefix("acme") == "ORDERFLOW_SECRET_ACME_"
    assert env_secret_prefix("acme-eu_2") == "ORDERFLOW_SECRET_ACME_EU_2_"


def test_a_variable_belongs_to_the_org_with_the_longest_matching_prefix() -> None:
    name = "ORDERFLOW_SECRET_ACME_SFTP_KEY"
    assert env_owner(name, ["acme"]) == ["acme"]
    assert env_owner(name, ["acme", "acme-sftp"]) == ["acme-sftp"]
    assert env_owner(name, ["globex"]) == []
    # acme cannot name the secret of org acme-sftp, whichever is saved first
    acme = sftp("acme", private_key_ref=f"env:{name}", host="a.example")
    acme_sftp = sftp("acme-sftp", private_key_ref=f"env:{name}", host="b.example")
    assert "in the scope of org acme-sftp" in only(connector_problems(acme, [acme_sftp]))
    assert "org acme's private_key_ref" in only(connector_problems(acme_sftp, [acme]))
    # acme-sftp's own name is its own, next to acme's own
    acme_own = sftp("acme", private_key_ref="env:ORDERFLOW_SECRET_ACME_KEY", host="a.example")
    assert connector_problems(acme_sftp, [acme_own]) == []
    assert connector_problems(acme_own, [acme_sftp]) == []


def test_orgs_whose_prefixes_collide_cannot_use_env_secrets() -> None:
    first = sftp("a-b", host="a.example")
    second = sftp("a_b", host="b.example")
    assert "in the scope of org a_b" in connector_problems(first, [second])[0]


# --- conflicts at run time: the row that was there first keeps working --------------------------

OLDER = datetime(2026, 1, 1, tzinfo=UTC)
NEWER = datetime(2026, 6, 1, tzinfo=UTC)


def test_at_run_time_a_newer_row_with_root_folders_refuses_only_itself() -> None:
    healthy = [local("acme", updated_at=OLDER), local("globex", updated_at=OLDER)]
    bad = local("zzz", enabled=False, export_path="/", ack_path="/", updated_at=NEWER)
    rows = [*healthy, bad]
    for config in healthy:
        assert connector_problems(config, rows, conflicts_with="earlier") == []
    assert connector_problems(bad, rows, conflicts_with="earlier")
    # saving a config still refuses any conflict, with rows older or newer
    assert "org zzz's" in connector_problems(healthy[0], rows)[0]


def test_a_newer_org_sharing_a_folder_is_refused_and_the_older_is_not() -> None:
    acme = local("acme", updated_at=NEWER, ack_path="/dz/globex/acks")
    globex = local("globex", updated_at=OLDER)
    assert connector_problems(globex, [acme, globex], conflicts_with="earlier") == []
    assert "org globex's ack_path" in only(
        connector_problems(acme, [acme, globex], conflicts_with="earlier")
    )
    # at equal times the smaller org id was there first
    tied = [replace(acme, updated_at=OLDER), globex]
    assert connector_problems(tied[0], tied, conflicts_with="earlier") == []
    assert connector_problems(globex, tied, conflicts_with="earlier")


def test_a_newer_org_with_the_same_secret_prefix_refuses_only_itself() -> None:
    acme = sftp("acme", updated_at=OLDER, host="a.example")
    upper = sftp("ACME", updated_at=NEWER, host="b.example")
    assert env_secret_prefix("ACME") == env_secret_prefix("acme")
    assert connector_problems(acme, [acme, upper], conflicts_with="earlier") == []
    assert any(
        "org acme" in p for p in connector_problems(upper, [acme, upper], conflicts_with="earlier")
    )


def test_a_row_never_saved_comes_after_every_saved_row() -> None:
    saved, unsaved = local("zzz", updated_at=NEWER), local("aaa")
    assert precedes(saved, unsaved) and not precedes(unsaved, saved)


# --- local folders against the code location's own folders and through symlinks ----------------

RESERVED = (
    ("the export store", "/srv/orderflow/store"),
    ("the spool", "/srv/orderflow/spool"),
    ("the secret folder", "/run/secrets"),
    ("DAGSTER_HOME", "/srv/dagster"),
)


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("ack_path", "/srv/orderflow/store/exports/globex/D-1", "the export store"),
        ("export_path", "/srv/orderflow/spool", "the spool"),
        ("ack_path", "/run/secrets/acme", "the secret folder"),
        ("export_path", "/srv/dagster/orderflow/out", "DAGSTER_HOME"),
        ("ack_path", "/srv", "the export store"),  # the store lies inside it
    ],
)
def test_a_local_folder_apart_from_the_code_locations_folders(
    field: str, value: str, says: str
) -> None:
    config = local("evil", **{field: value})
    problems = connector_problems(config, [], local=LocalFolders(reserved=RESERVED))
    assert any(f"{field} {value!r}" in p and says in p for p in problems), problems
    assert connector_problems(local("acme"), [], local=LocalFolders(reserved=RESERVED)) == []
    # an SFTP server's folders are on another machine
    remote = sftp("evil", **{field: value})
    assert connector_problems(remote, [], local=LocalFolders(reserved=RESERVED)) == []


def test_a_symlink_into_the_store_or_another_org_is_followed() -> None:
    evil = local("evil", ack_path="/dz/evil/acks")
    globex = local("globex", updated_at=OLDER)
    into_store = LocalFolders(reserved=RESERVED, real={"/dz/evil/acks": "/srv/orderflow/store"})
    [problem] = connector_problems(evil, [globex], local=into_store)
    assert "really '/srv/orderflow/store'" in problem and "the export store" in problem
    into_globex = LocalFolders(real={"/dz/evil/acks": "/dz/globex/outbox"})
    [problem] = connector_problems(evil, [globex], local=into_globex)
    assert "org globex's export_path" in problem and "through symlinks" in problem
    processed = LocalFolders(real={"/dz/evil/acks/processed": "/dz/globex/acks"})
    [problem] = connector_problems(evil, [globex], local=processed)
    assert "ack_path's processed/" in problem and "org globex's ack_path" in problem
    into_own_exports = LocalFolders(real={"/dz/evil/acks": "/dz/evil/outbox"})
    assert "through symlinks" in only(connector_problems(evil, [], local=into_own_exports))


def test_dropzones_may_live_in_the_folder_set_aside_for_them() -> None:
    folders = LocalFolders(
        reserved=(("DAGSTER_HOME", "/srv/dagster"),),
        dropzone_home="/srv/dagster/orderflow/dropzones",
    )
    home = "/srv/dagster/orderflow/dropzones"
    inside = local("acme", export_path=f"{home}/acme/outbox", ack_path=f"{home}/acme/acks")
    assert connector_problems(inside, [], local=folders) == []
    beside = local("acme", export_path=f"{home}/acme/outbox", ack_path="/srv/dagster/acks")
    assert "DAGSTER_HOME" in only(connector_problems(beside, [], local=folders))
    whole = local("acme", export_path=home, ack_path="/dz/acme/acks")
    assert "DAGSTER_HOME" in only(connector_problems(whole, [], local=folders))
