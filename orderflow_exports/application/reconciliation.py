"""Reconciliation: each org's export and ack folders compared with ``erp_export``.

Plain Python over the ports; ``defs/reconciliation.py`` wires it into a scheduled job. Read-only
unless a fix is switched on, and then each fix goes through the existing compare-and-set paths:

- ``remove_stale_temps``: the temp files reported as left behind are removed by the dropzone's
  own stale-temp sweep, which keeps every other file (a temp file of a PENDING row is never
  reported: it is the evidence the settle rule needs);
- ``settle_orphaned_pending``: a PENDING row whose run is not active is settled by the export
  use case's settle rule (``Publisher.settle_unpublished``: file there → SENT; rename never
  issued → the right is taken, FAILED; temp still there → removed, FAILED; else SENT,
  unconfirmed), passed in as ``settle``.

Each org is isolated: a refused connector, an unreachable server or an unreadable folder is a
``not_reconciled`` finding of that org and the others go on. Only the org's own two folders are
listed (never through a symlink), and only ack files at the top of its ack folder are read.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from orderflow_exports.domain.ack_files import (
    DEFAULT_MAX_ACK_BYTES,
    AckRejected,
    excerpt,
    is_ack_name,
    parse_ack,
)
from orderflow_exports.domain.connector_rules import LocalFolders, connector_problems
from orderflow_exports.domain.errors import ErrorCode, ExportError
from orderflow_exports.domain.naming import is_our_temp_file
from orderflow_exports.domain.ports import (
    DropzoneConnector,
    DropzoneSession,
    ExportLedger,
    FolderEntry,
    Logger,
    RunLiveness,
)
from orderflow_exports.domain.reconciliation import (
    FINDING_KINDS,
    Finding,
    ReconcileRules,
    classify_export_folder,
    classify_pending,
    classify_sent,
    export_id_of,
    final_name_of_temp,
)
from orderflow_exports.domain.records import ConnectorConfig, ExportRecord
from orderflow_exports.domain.status import ExportStatus

_log = logging.getLogger(__name__)


class Settle(Protocol):
    """The export use case's settle rule for one PENDING row (see the module docstring)."""

    def __call__(
        self,
        record: ExportRecord,
        session: DropzoneSession,
        folder: str,
        *,
        code: str,
        message: str,
        transient: bool | None = None,
    ) -> tuple[ExportRecord, str]: ...


@dataclass(frozen=True)
class ReconcileSettings:
    """Thresholds, bounds and the fixes that are switched on (all off by default)."""

    rules: ReconcileRules = field(default_factory=ReconcileRules)
    max_rows_per_org: int = 10_000
    max_ack_files_per_org: int = 500
    max_ack_bytes: int = DEFAULT_MAX_ACK_BYTES
    remove_stale_temps: bool = False
    settle_orphaned_pending: bool = False


@dataclass
class OrgReconciliation:
    """The findings of one org, and whether its folders could be checked at all."""

    org_id: str
    findings: list[Finding] = field(default_factory=list)
    export_entries: int = 0
    ack_files_read: int = 0
    ack_files_unreadable: int = 0

    @property
    def reconciled(self) -> bool:
        return not any(f.kind == "not_reconciled" for f in self.findings)

    def counts(self) -> dict[str, int]:
        return {kind: sum(f.kind == kind for f in self.findings) for kind in FINDING_KINDS}

    def describe(self) -> str:
        if not self.findings:
            return f"org {self.org_id}: dropzone and ledger agree"
        counts = ", ".join(f"{n} {kind}" for kind, n in self.counts().items() if n)
        fixed = sum(f.fixed is not None for f in self.findings)
        return f"org {self.org_id}: {counts}" + (f" ({fixed} fixed)" if fixed else "")


def finding_json(finding: Finding) -> dict[str, Any]:
    """A finding as JSON for metadata and log lines: its set fields only, ages in seconds."""
    return {
        k: v
        for k, v in {
            "class": finding.kind,
            "subject": finding.subject,
            "draft_order_id": finding.draft_order_id,
            "export_id": finding.export_id,
            "age_seconds": round(finding.age_seconds) if finding.age_seconds is not None else None,
            "detail": finding.detail,
            "next_step": finding.next_step,
            "fixed": finding.fixed,
        }.items()
        if v not in (None, "")
    }


def finding_line(finding: Finding) -> str:
    """The log line of one finding."""
    return f"{finding.org_id}: {finding.kind}: {json.dumps(finding_json(finding))}"


@dataclass(frozen=True)
class ReconciliationTotals:
    """One reconciliation over every org in totals, and what left it incomplete."""

    orgs: int
    orgs_not_reconciled: int
    findings: tuple[Finding, ...]
    fixed: int
    per_org: dict[str, dict[str, int]]
    incomplete: tuple[str, ...]  # the description of each org that could not be checked

    @property
    def incomplete_message(self) -> str | None:
        """Why the reconciliation failed, or None when every org was checked."""
        if not self.incomplete:
            return None
        return "reconciliation incomplete: " + "; ".join(self.incomplete)


def reconciliation_totals(results: Sequence[OrgReconciliation]) -> ReconciliationTotals:
    """The totals of per-org results, in the order the results come."""
    findings = tuple(finding for result in results for finding in result.findings)
    return ReconciliationTotals(
        orgs=len(results),
        orgs_not_reconciled=sum(not r.reconciled for r in results),
        findings=findings,
        fixed=sum(f.fixed is not None for f in findings),
        per_org={r.org_id: r.counts() for r in results},
        incomplete=tuple(r.describe() for r in results if not r.reconciled),
    )


def utc_now() -> datetime:
    return datetime.now(UTC)


class Reconciler:
    """Compares every enabled org's dropzone with the ledger; fixes only what settings allow."""

    def __init__(
        self,
        ledger: ExportLedger,
        liveness: RunLiveness,
        settings: ReconcileSettings | None = None,
        *,
        settle: Settle | None = None,
        clock: Callable[[], datetime] = utc_now,
        log: Logger | None = None,
        local_folders: Callable[[Sequence[ConnectorConfig]], LocalFolders] | None = None,
    ) -> None:
        self._ledger = ledger
        self._liveness = liveness
        self._settings = settings or ReconcileSettings()
        if self._settings.settle_orphaned_pending and settle is None:
            raise ValueError("settle_orphaned_pending needs the settle rule (settle=...)")
        self._settle = settle
        self._clock = clock
        self._log = log or _log
        self._local_folders = local_folders

    def reconcile_all(
        self,
        configs: Iterable[ConnectorConfig],
        connector_factory: Callable[[], DropzoneConnector],
    ) -> list[OrgReconciliation]:
        """Every enabled org, each with a connector of its own (closed when it is done)."""
        every = list(configs)
        local = self._local_folders(every) if self._local_folders is not None else None
        results = []
        for config in sorted((c for c in every if c.enabled), key=lambda c: c.org_id):
            others = [other for other in every if other.org_id != config.org_id]
            connector = connector_factory()
            try:
                result = self.reconcile_org(config, connector, others=others, local=local)
            except Exception as exc:  # noqa: BLE001 - one org's failure never stops the others
                result = OrgReconciliation(config.org_id)
                result.findings.append(_not_reconciled(config.org_id, "the org", exc))
            finally:
                connector.close()
            report = self._log.warning if result.findings else self._log.info
            report(result.describe())
            results.append(result)
        return results

    def reconcile_org(
        self,
        config: ConnectorConfig,
        connector: DropzoneConnector,
        *,
        others: Sequence[ConnectorConfig] = (),
        local: LocalFolders | None = None,
    ) -> OrgReconciliation:
        result = OrgReconciliation(config.org_id)
        problems = connector_problems(config, others, local=local, conflicts_with="earlier")
        if problems:
            # A folder shared with another org (or ours) is not even listed.
            reason = "connector config refused: " + "; ".join(problems)
            result.findings.append(_not_reconciled(config.org_id, "the connector", reason))
            return result
        try:
            session = connector.session_for(config)
            entries = session.list_entries(config.export_path)
        except Exception as exc:  # noqa: BLE001 - reported as this org's finding
            result.findings.append(_not_reconciled(config.org_id, config.export_path, exc))
            return result
        result.export_entries = len(entries)
        now = self._clock()
        rules = self._settings.rules
        rows = self._rows_named_by(entries)
        folder_findings = classify_export_folder(config.org_id, entries, rows, now, rules)
        present = {entry.name for entry in entries if entry.kind == "file"}
        acks_waiting = self._acks_waiting(config, session, result)
        pending = self._ledger.list(
            org_id=config.org_id, status=ExportStatus.PENDING, limit=self._settings.max_rows_per_org
        )
        row_findings = []
        for record in pending:
            active = bool(record.dagster_run_id) and self._liveness.is_active(
                record.dagster_run_id or ""
            )
            finding = classify_pending(record, run_active=active, now=now, rules=rules)
            if finding is not None:
                row_findings.append(self._maybe_settle(finding, record, config, session))
        if acks_waiting is not None:
            sent = self._ledger.list(
                org_id=config.org_id,
                status=ExportStatus.SENT,
                limit=self._settings.max_rows_per_org,
            )
            for record in sent:
                finding = classify_sent(
                    record,
                    file_present=record.filename in present,
                    acks_waiting=acks_waiting,
                    ack_deadline_seconds=config.ack_deadline_seconds,
                    now=now,
                    rules=rules,
                )
                if finding is not None:
                    if result.ack_files_unreadable:
                        finding = replace(
                            finding,
                            detail=f"{finding.detail}; {result.ack_files_unreadable} ack "
                            "file(s) could not be read and may answer it",
                        )
                    row_findings.append(finding)
        if self._settings.remove_stale_temps:
            folder_findings = self._remove_temps(folder_findings, config, session)
        result.findings.extend(folder_findings + row_findings)
        return result

    def _rows_named_by(self, entries: Sequence[FolderEntry]) -> dict[str, ExportRecord | None]:
        rows: dict[str, ExportRecord | None] = {}
        for entry in entries:
            if entry.kind != "file":
                continue
            name = final_name_of_temp(entry.name) if is_our_temp_file(entry.name) else entry.name
            export_id = export_id_of(name)
            if export_id is not None and export_id not in rows:
                rows[export_id] = self._ledger.get(export_id)
        return rows

    def _acks_waiting(
        self, config: ConnectorConfig, session: DropzoneSession, result: OrgReconciliation
    ) -> set[str] | None:
        """Export ids answered by acks still waiting at the top of the ack folder.

        None when the folder cannot be listed: then no SENT row is judged unanswered.
        """
        try:
            entries = session.list_entries(config.ack_path)
        except Exception as exc:  # noqa: BLE001 - reported as this org's finding
            result.findings.append(_not_reconciled(config.org_id, config.ack_path, exc))
            return None
        waiting: set[str] = set()
        candidates = [e for e in entries if e.kind == "file" and is_ack_name(e.name)]
        limit = self._settings.max_ack_files_per_org
        result.ack_files_unreadable += max(len(candidates) - limit, 0)
        for entry in candidates[:limit]:
            try:
                data = session.read_file(config.ack_path, entry.name, self._settings.max_ack_bytes)
                waiting.add(parse_ack(data, max_bytes=self._settings.max_ack_bytes).export_id)
                result.ack_files_read += 1
            except (ExportError, AckRejected, OSError):
                # Malformed or still being written: the ack pass judges it; here it only
                # weakens the "no ack" conclusion, which the finding then says.
                result.ack_files_unreadable += 1
        return waiting

    def _maybe_settle(
        self,
        finding: Finding,
        record: ExportRecord,
        config: ConnectorConfig,
        session: DropzoneSession,
    ) -> Finding:
        if not self._settings.settle_orphaned_pending:
            return finding
        assert self._settle is not None
        # Asked again right before acting: the run may have been re-queued since the listing.
        if record.dagster_run_id and self._liveness.is_active(record.dagster_run_id):
            return replace(finding, fixed="not settled: its run became active again")
        try:
            settled, verdict = self._settle(
                record,
                session,
                config.export_path,
                code=ErrorCode.INTERRUPTED,
                message=f"run {record.dagster_run_id} ended before the file was published; "
                "settled by reconciliation (transient)",
                transient=True,
            )
        except ExportError as exc:
            return replace(finding, fixed=f"not settled: {excerpt(str(exc), 300)}")
        self._log.warning(
            f"org {config.org_id}: PENDING export {record.id} settled by reconciliation: "
            f"{verdict}, now {settled.status}"
        )
        return replace(finding, fixed=f"settled: {verdict}, now {settled.status}")

    def _remove_temps(
        self, findings: list[Finding], config: ConnectorConfig, session: DropzoneSession
    ) -> list[Finding]:
        reported = {f.subject for f in findings if f.kind == "temp_left"}
        if not reported:
            return findings
        try:
            # The sweep keeps everything but the temp files reported here (and still stale).
            removed = set(
                session.sweep_stale_temps(
                    config.export_path,
                    self._settings.rules.stale_temp_age,
                    keep=lambda final: f".{final}.tmp" not in reported,
                )
            )
        except Exception as exc:  # noqa: BLE001 - the findings stay, with the reason
            why = f"not removed: {excerpt(str(exc), 300)}"
            return [replace(f, fixed=why) if f.kind == "temp_left" else f for f in findings]
        for name in sorted(removed):
            self._log.warning(f"org {config.org_id}: removed stale temp file {name}")
        return [
            replace(f, fixed="removed") if f.kind == "temp_left" and f.subject in removed else f
            for f in findings
        ]


def _not_reconciled(org_id: str, what: str, error: BaseException | str) -> Finding:
    message = error.message if isinstance(error, ExportError) else str(error)
    code = f"{error.code}: " if isinstance(error, ExportError) else ""
    return Finding(
        "not_reconciled",
        org_id,
        what,
        "fix the connection or the folder; this org's reconciliation is incomplete",
        detail=excerpt(code + message, 400),
    )
