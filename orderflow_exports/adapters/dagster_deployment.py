"""The running Dagster deployment through its webserver's GraphQL API (``DeploymentRuns``).

Runs launched here go through the instance's run coordinator (queued, then launched by the
daemon), so they have an external job origin: the daemon's run retries, the tag concurrency
limits and the UI's re-execute apply, unlike runs of ``dagster job execute``.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from orderflow_exports.application.retry import DeploymentUnavailable
from orderflow_exports.domain.ports import LaunchedRun

EXPORT_JOB = "export_drafts_job"
PARTITIONS_NAME = "approved_drafts"
PARTITION_TAG = "dagster/partition"
PARENT_RUN_TAG = "dagster/parent_run_id"
WILL_RETRY_TAG = "dagster/will_retry"

_REPOSITORIES = """
query {
  repositoriesOrError {
    __typename
    ... on RepositoryConnection { nodes { name location { name } jobs { name } } }
    ... on PythonError { message }
  }
}
"""

_ADD_PARTITION = """
mutation($repo: RepositorySelector!, $name: String!, $key: String!) {
  addDynamicPartition(repositorySelector: $repo, partitionsDefName: $name, partitionKey: $key) {
    __typename
    ... on Error { message }
  }
}
"""

_LAUNCH = """
mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on Error { message }
  }
}
"""

_RUN = """
query($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { runId status tags { key value } }
    ... on Error { message }
  }
}
"""

_CHILD_RUNS = """
query($parent: String!) {
  runsOrError(filter: {tags: [{key: "dagster/parent_run_id", value: $parent}]}) {
    __typename
    ... on Runs { results { runId } }
    ... on Error { message }
  }
}
"""


class GraphQLDeployment:
    """``DeploymentRuns`` over a Dagster webserver's ``/graphql`` endpoint."""

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"--url {url!r} is not an http(s) URL of the Dagster webserver")
        self.url = url.rstrip("/")
        self._timeout = timeout
        self._repository: dict[str, str] | None = None

    def _query(self, document: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = json.dumps({"query": document, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise DeploymentUnavailable(
                f"the Dagster webserver at {self.url} answered HTTP {exc.code}"
            ) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DeploymentUnavailable(
                f"cannot reach the Dagster webserver at {self.url} ({reason}); start it or "
                "pass --url (or set ORDERFLOW_DAGSTER_URL)"
            ) from None
        if answer.get("errors"):
            first = answer["errors"][0].get("message", "unknown error")
            raise DeploymentUnavailable(f"the Dagster webserver refused the request: {first}")
        data: dict[str, Any] = answer["data"]
        return data

    def repository(self) -> dict[str, str]:
        """The repository selector of the code location holding ``export_drafts_job``."""
        if self._repository is not None:
            return self._repository
        answer = self._query(_REPOSITORIES)["repositoriesOrError"]
        if answer["__typename"] != "RepositoryConnection":
            raise DeploymentUnavailable(f"the deployment lists no code locations: {answer}")
        holding = [
            {"repositoryLocationName": node["location"]["name"], "repositoryName": node["name"]}
            for node in answer["nodes"]
            if any(job["name"] == EXPORT_JOB for job in node["jobs"])
        ]
        if len(holding) != 1:
            raise DeploymentUnavailable(
                f"{len(holding)} code locations at {self.url} hold {EXPORT_JOB} (need exactly one)"
            )
        self._repository = holding[0]
        return holding[0]

    def ensure_partition(self, partition_key: str) -> bool:
        result = self._query(
            _ADD_PARTITION,
            {"repo": self.repository(), "name": PARTITIONS_NAME, "key": partition_key},
        )["addDynamicPartition"]
        kind = result["__typename"]
        if kind == "AddDynamicPartitionSuccess":
            return True
        if kind == "DuplicateDynamicPartitionError":
            return False
        raise DeploymentUnavailable(
            f"cannot add partition {partition_key}: {kind}: {result.get('message', '')}"
        )

    def launch_export(self, partition_key: str, *, tags: dict[str, str], force: bool) -> str:
        selector = {**self.repository(), "jobName": EXPORT_JOB}
        all_tags = {**tags, PARTITION_TAG: partition_key}
        params = {
            "selector": selector,
            "runConfigData": {"ops": {"export_json": {"config": {"force": force}}}},
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in all_tags.items()]},
        }
        result = self._query(_LAUNCH, {"params": params})["launchRun"]
        if result["__typename"] == "LaunchRunSuccess":
            run_id: str = result["run"]["runId"]
            return run_id
        detail = result.get("message") or "; ".join(e["message"] for e in result.get("errors", []))
        raise DeploymentUnavailable(f"the run was not launched: {result['__typename']}: {detail}")

    def run(self, run_id: str) -> LaunchedRun:
        result = self._query(_RUN, {"runId": run_id})["runOrError"]
        if result["__typename"] != "Run":
            raise DeploymentUnavailable(f"run {run_id}: {result['__typename']}")
        tags = {t["key"]: t["value"] for t in result["tags"]}
        retry_run_id = None
        will_retry = result["status"] == "FAILURE" and tags.get(WILL_RETRY_TAG) == "true"
        if result["status"] == "FAILURE":
            children = self._query(_CHILD_RUNS, {"parent": run_id})["runsOrError"]
            if children["__typename"] == "Runs" and children["results"]:
                # A run is retried at most once; the retry of a retry has that retry as parent.
                retry_run_id = children["results"][0]["runId"]
        return LaunchedRun(
            run_id=run_id, status=result["status"], retry_run_id=retry_run_id, will_retry=will_retry
        )

    def run_url(self, run_id: str) -> str:
        return f"{self.url}/runs/{run_id}"

    def partition_url(self, partition_key: str) -> str:
        """The partition's page of ``export_json`` in the UI."""
        quoted = urllib.parse.quote(partition_key, safe="")
        return f"{self.url}/assets/export_json?view=partitions&partition={quoted}"
