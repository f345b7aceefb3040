"""Offline checks of the deployment kit (deploy/): no image is built, no cluster is reached.

- every YAML file loads; every instance config we ship is accepted by Dagster's own instance
  config validation (the classes it names are imported and their config checked);
- dev, single host, ECS and the Helm values agree on the run rules (queue, per-host limit,
  retries, monitoring), so what is seen in dev is what production does;
- the Dockerfile installs with scripts/install.sh, the script scripts/test.sh uses, as a
  non-root user, pinned to the set the tests ran with, with no secret in it;
- the systemd units start the services through scripts/topology.sh.
"""

from __future__ import annotations

import configparser
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from orderflow_exports_tests.support.processes import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
PRODUCTION = REPO_ROOT / "dagster.yaml"
DEV = DEPLOY / "dev" / "dagster.yaml"
ECS = DEPLOY / "ecs" / "dagster.yaml"
HELM_VALUES = DEPLOY / "helm" / "values.yaml"
RUN_RULES = ("concurrency", "run_retries", "sensors", "backfills", "retention")


def _load(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text())
    assert isinstance(loaded, dict), path
    return loaded


@pytest.fixture
def instance_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "DAGSTER_PG_HOST": "db.example",
        "DAGSTER_PG_PORT": "5432",
        "DAGSTER_PG_USER": "dagster",
        "DAGSTER_PG_PASSWORD": "not-a-secret",
        "DAGSTER_PG_DB": "dagster",
        "DAGSTER_COMPUTE_LOG_BUCKET": "logs",
    }.items():
        monkeypatch.setenv(name, value)


def _validated(config: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    from dagster._core.instance.config import dagster_instance_config

    home = tmp_path / f"home-{len(list(tmp_path.iterdir()))}"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    validated, _ = dagster_instance_config(str(home))
    return dict(validated)


def test_every_yaml_file_we_ship_loads() -> None:
    files = [*DEPLOY.rglob("*.yaml"), REPO_ROOT / "workspace.grpc.yaml", PRODUCTION]
    assert len(files) >= 5
    for path in files:
        _load(path)
    [entry] = _load(REPO_ROOT / "workspace.grpc.yaml")["load_from"]
    assert set(entry["grpc_server"]["host"]) == {"env"}  # no address baked in


@pytest.mark.parametrize("path", [PRODUCTION, DEV, ECS], ids=["single-host", "dev", "ecs"])
def test_instance_configs_pass_dagsters_validation(
    path: Path, tmp_path: Path, instance_env: None
) -> None:
    validated = _validated(_load(path), tmp_path)
    assert validated["run_retries"]["enabled"] is True
    if path == ECS:
        assert validated["run_launcher"]["class"] == "EcsRunLauncher"
        assert validated["compute_logs"]["class"] == "S3ComputeLogManager"
        # The run launcher's own config schema is applied to its section.
        from dagster._config import process_config
        from dagster_aws.ecs import EcsRunLauncher

        checked = process_config(EcsRunLauncher.config_type(), validated["run_launcher"]["config"])
        assert checked.success, checked.errors


def test_dev_ecs_and_single_host_share_the_run_rules() -> None:
    production = _load(PRODUCTION)
    for other in (DEV, ECS):
        loaded = _load(other)
        for section in RUN_RULES:
            assert loaded[section] == production[section], (other, section)
        for key, value in production["run_monitoring"].items():
            assert loaded["run_monitoring"][key] == value, (other, key)
    assert "storage" not in _load(DEV)  # dev keeps the embedded SQLite of DAGSTER_HOME


def test_dev_instance_enables_retries_and_the_per_host_limit(tmp_path: Path) -> None:
    home = tmp_path / "dev_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(DEV.read_text())
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
        assert instance.run_retries_retry_on_asset_or_op_failure
        assert instance.run_monitoring_enabled
        queue = instance.get_concurrency_config().run_queue_config
        assert queue is not None and queue.max_concurrent_runs == 8
        assert list(queue.tag_concurrency_limits) == [
            {
                "key": "orderflow/dropzone_host",
                "value": {"applyLimitPerUniqueValue": True},
                "limit": 2,
            }
        ]
        coordinator = instance.run_coordinator
        assert type(coordinator).__name__ == "QueuedRunCoordinator"


def test_helm_values_match_the_instance_and_render_valid_sections(
    tmp_path: Path, instance_env: None
) -> None:
    values = _load(HELM_VALUES)
    production = _load(PRODUCTION)
    [deployment] = values["dagster-user-deployments"]["deployments"]
    assert deployment["dagsterApiGrpcArgs"][:2] == ["-m", "orderflow_exports"]
    assert deployment["podSecurityContext"]["runAsNonRoot"] is True
    assert deployment["includeConfigInLaunchedRuns"]["enabled"] is True
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["postgresql"]["postgresqlScheme"] == "postgresql+psycopg2"
    daemon = values["dagsterDaemon"]
    queued = daemon["runCoordinator"]["config"]["queuedRunCoordinator"]
    runs = production["concurrency"]["runs"]
    assert queued["maxConcurrentRuns"] == runs["max_concurrent_runs"]
    assert queued["tagConcurrencyLimits"] == runs["tag_concurrency_limits"]
    retries = production["run_retries"]
    assert daemon["runRetries"] == {
        "enabled": retries["enabled"],
        "maxRetries": retries["max_retries"],
        "retryOnAssetOrOpFailure": retries["retry_on_asset_or_op_failure"],
    }
    monitoring = production["run_monitoring"]
    assert daemon["runMonitoring"]["startTimeoutSeconds"] == monitoring["start_timeout_seconds"]

    # The sections the chart writes into its instance ConfigMap from these values (K8sRunLauncher
    # itself needs dagster-k8s, which this project does not install: not validated here).
    s3 = values["computeLogManager"]["config"]["s3ComputeLogManager"]
    rendered = {
        "run_coordinator": {
            "module": "dagster.core.run_coordinator",
            "class": "QueuedRunCoordinator",
            "config": {
                "max_concurrent_runs": queued["maxConcurrentRuns"],
                "tag_concurrency_limits": queued["tagConcurrencyLimits"],
            },
        },
        "compute_logs": {
            "module": "dagster_aws.s3.compute_log_manager",
            "class": "S3ComputeLogManager",
            "config": {
                "bucket": s3["bucket"],
                "prefix": s3["prefix"],
                "region": s3["region"],
                "upload_interval": s3["uploadInterval"],
                "skip_empty_files": s3["skipEmptyFiles"],
            },
        },
        "run_retries": retries,
        "run_monitoring": {
            "enabled": True,
            "start_timeout_seconds": daemon["runMonitoring"]["startTimeoutSeconds"],
            "cancel_timeout_seconds": daemon["runMonitoring"]["cancelTimeoutSeconds"],
            "poll_interval_seconds": daemon["runMonitoring"]["pollIntervalSeconds"],
            "max_resume_run_attempts": daemon["runMonitoring"]["maxResumeRunAttempts"],
        },
        "retention": {
            "schedule": {"purge_after_days": values["retention"]["schedule"]["purgeAfterDays"]},
            "sensor": {"purge_after_days": values["retention"]["sensor"]["purgeAfterDays"]},
        },
    }
    validated = _validated(rendered, tmp_path)
    assert validated["compute_logs"]["config"]["bucket"] == "orderflow-dagster-logs"
    assert validated["retention"] == production["retention"]


def _run_steps(dockerfile: str) -> list[str]:
    joined = re.sub(r"\\\n\s*", " ", dockerfile)
    return [line[4:].strip() for line in joined.splitlines() if line.startswith("RUN ")]


def test_dockerfile_installs_with_the_script_the_tests_use() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    installs = [
        step
        for step in _run_steps(dockerfile)
        if "install" in step and "pip" in step or "install.sh" in step
    ]
    assert len(installs) == 1 and "bash scripts/install.sh" in installs[0], installs
    assert "pip install" not in " ".join(_run_steps(dockerfile))  # only through the script
    test_sh = (REPO_ROOT / "scripts" / "test.sh").read_text()
    assert "bash scripts/install.sh" in test_sh and "pip install" not in test_sh
    # Non-root at run time, no secret baked in.
    user_lines = [line for line in dockerfile.splitlines() if line.startswith("USER ")]
    assert user_lines and user_lines[-1].split()[1].split(":")[0] not in ("0", "root")
    settings = " ".join(line for line in dockerfile.splitlines() if line.startswith(("ENV", "ARG")))
    assert not re.search(r"PASSWORD|SECRET_ACCESS|ORDERFLOW_SECRET_[A-Z]|TOKEN", settings)
    ignored = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert {".venv", ".orderflow", "**/secrets"} <= set(ignored)


def test_constraints_pin_the_projects_dependency_set() -> None:
    pins = {}
    for line in (DEPLOY / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"not pinned: {line}"
            pins[name.lower().replace("_", "-")] = version
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"]:
        name = re.split(r"[<>=\[ ]", requirement, maxsplit=1)[0].lower().replace("_", "-")
        assert name in pins, f"{name} is not pinned in deploy/constraints.txt"
        if "==" in requirement:
            assert pins[name] == requirement.split("==")[1], name


@pytest.mark.parametrize("service", ["code-server", "daemon", "webserver"])
def test_systemd_units_start_the_topology_script(service: str) -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(DEPLOY / "systemd" / f"orderflow-{service}.service")
    command = unit["Service"]["ExecStart"]
    assert shlex.split(command)[-1].endswith(f"scripts/topology.sh {service}")
    assert unit["Service"]["User"] == "orderflow"
    assert "PASSWORD=" not in (DEPLOY / "systemd" / "orderflow.env.example").read_text()


def test_the_validation_used_above_refuses_a_wrong_section(
    tmp_path: Path, instance_env: None
) -> None:
    from dagster._core.errors import DagsterInvalidConfigError

    config = _load(ECS)
    config["run_retries"]["max_retry"] = 2  # misspelt
    with pytest.raises(DagsterInvalidConfigError):
        _validated(config, tmp_path)
