"""In-memory fakes of every port, for fast unit tests of the use cases (milliseconds, no I/O).

Each keeps the semantics the use cases rely on: compare-and-set on endpoints and requests, a real hash
chain in the audit trail, NotFound for unknown names. The integration tests use the real adapters.
Each fake has ``fail`` (a dict of method name -> exception) to inject a broken source.
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from services.approvals import ApprovalRepository, ApprovalRequest
from services.audit import GENESIS, AuditEntry, AuditTrail, VerifyResult, canonical, entry_hash, entry_subjects
from services.clock import iso
from services.errors import Conflict, NotFound
from services.history.serving import ServedState, ServingHistory
from services.metrics import LiveMetrics
from services.registry import ModelRegistry, ModelSummary, RunDetail, Signature, VersionDetail, VersionSummary
from services.retraining import Retrainer, RetrainRun
from services.serving import Change, Condition, Endpoint, Revision, ServingBackend


class FakeClock:
    def __init__(self, start: datetime | None = None):
        self.now = start or datetime(2026, 11, 26, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw) -> None:
        self.now += timedelta(**kw)


class _Failing:
    fail: dict[str, Exception]

    def _check(self, method: str) -> None:
        exc = self.fail.get(method) or self.fail.get("*")
        if exc is not None:
            raise exc


# -- registry ---------------------------------------------------------------------------------------------
@dataclass
class FakeVersion:
    metrics: dict[str, float] = field(default_factory=dict)
    inputs: tuple[tuple[str, str], ...] = (("x", "double"),)
    files: bool = True


class FakeRegistry(ModelRegistry, _Failing):
    source = "fake registry"

    def __init__(self):
        self.models: dict[str, dict[str, FakeVersion]] = {}
        self.alias_map: dict[str, dict[str, str]] = {}
        self.fail = {}

    def add(self, model: str, version: str, **kw) -> None:
        self.models.setdefault(model, {})[str(version)] = FakeVersion(**kw)
        self.alias_map.setdefault(model, {})

    def _model(self, name: str) -> dict[str, FakeVersion]:
        if name not in self.models:
            raise NotFound(f"no registered model {name!r}", source=self.source)
        return self.models[name]

    def _summary(self, name: str, version: str) -> VersionSummary:
        v = self._model(name).get(str(version))
        if v is None:
            raise NotFound(f"{name} has no version {version}", source=self.source)
        aliases = tuple(a for a, ver in self.alias_map[name].items() if ver == str(version))
        return VersionSummary(name, str(version), aliases=aliases, metrics=dict(v.metrics), run_id=f"run-{version}")

    def list_models(self) -> list[ModelSummary]:
        self._check("list_models")
        return [self.get_model(n) for n in self.models]

    def get_model(self, name: str) -> ModelSummary:
        self._check("get_model")
        versions = self._model(name)
        return ModelSummary(name, aliases=dict(self.alias_map[name]), version_count=len(versions),
                            latest_version=max(versions, key=int) if versions else None)

    def list_versions(self, name: str, *, with_metrics: bool = True) -> list[VersionSummary]:
        self._check("list_versions")
        return [self._summary(name, v) for v in sorted(self._model(name), key=int, reverse=True)]

    def get_version(self, name: str, version: str) -> VersionSummary:
        self._check("get_version")
        return self._summary(name, version)

    def get_version_detail(self, name: str, version: str) -> VersionDetail:
        self._check("get_version_detail")
        s = self._summary(name, version)
        sig = Signature(inputs=self._model(name)[str(version)].inputs, outputs=(("y", "long"),))
        run = RunDetail(s.run_id or "", metrics=dict(s.metrics), params={"version": str(version)})
        return VersionDetail(s, run, sig, (), f"memory://{name}/{version}")

    def metric_history(self, run_id: str, key: str):
        return []

    def recent_versions(self, limit: int = 10) -> list[VersionSummary]:
        return [s for n in self.models for s in self.list_versions(n)][:limit]

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self._check("set_alias")
        self._summary(name, version)
        self.alias_map[name][alias] = str(version)

    def delete_alias(self, name: str, alias: str) -> None:
        self._check("delete_alias")
        self.alias_map[self._model(name) and name].pop(alias, None)

    def artifact_available(self, name: str, version: str) -> bool:
        self._check("artifact_available")
        return self._model(name)[str(version)].files

    def storage_uri(self, name: str, version: str) -> str:
        self._summary(name, version)
        return f"memory://{name}/{version}"


# -- serving ----------------------------------------------------------------------------------------------
class FakeServing(ServingBackend, _Failing):
    """Endpoints in a dict; ``apply`` is a compare-and-set on an integer resource version. With
    ``history`` set it records every change itself, as the local backend does (``records_history``)."""

    name = "fake"
    source = "fake serving"

    def __init__(self, *, needs_storage_uri: bool = False, history: FakeServingHistory | None = None, clock=None):
        self.endpoints: dict[str, Endpoint] = {}
        self.needs_storage_uri = needs_storage_uri
        self.records_history = history is not None
        self.history = history
        self.clock = clock or FakeClock()
        self.applied: list[tuple[str, Change, str, str | None]] = []
        self.fail = {}
        self.replicas: list[tuple[datetime, str, str, int]] = []  # (at, endpoint, version, replicas) recorded

    def add(self, name: str, model: str, stable: str, canary: str | None = None, weight: int = 0,
            revisions: tuple[Revision, ...] = ()) -> Endpoint:
        ep = Endpoint(name, model, stable, canary, weight if canary else 0, ready=True, resource_version="1",
                      backend=self.name, revisions=revisions,
                      conditions=(Condition("Ready", "True"),))
        self.endpoints[name] = ep
        if self.history is not None:
            self.history.record(ServedState(name, self.clock(), stable, canary, ep.canary_weight, "seed",
                                            source="seed"))
        return ep

    def list_endpoints(self) -> list[Endpoint]:
        self._check("list_endpoints")
        return list(self.endpoints.values())

    def get_endpoint(self, name: str) -> Endpoint:
        self._check("get_endpoint")
        if name not in self.endpoints:
            raise NotFound(f"no endpoint named {name!r}", source=self.source)
        return self.endpoints[name]

    def apply(self, name: str, change: Change, *, actor: str, note: str = "", approved_by: str | None = None
              ) -> Endpoint:
        self._check("apply")
        ep = self.get_endpoint(name)
        if ep.resource_version != str(change.expected_resource_version):
            raise Conflict(f"endpoint {name!r} changed since it was read", source=self.source)
        t = change.target_state(ep.state())
        new = replace(ep, stable_version=t.stable_version, canary_version=t.canary_version,
                      canary_weight=t.canary_weight, resource_version=str(int(ep.resource_version) + 1))
        if change.op == "set_scaling" and change.scaling is not None:  # the bounds the change sets
            new = replace(new, scaling=(ep.scaling or type(change.scaling)()).merged(change.scaling))
        self.endpoints[name] = new
        self.applied.append((name, change, actor, approved_by))
        if self.history is not None:
            self.history.record(ServedState(name, self.clock(), t.stable_version, t.canary_version,
                                            t.canary_weight, actor, approved_by, note, "backend"))
        return new

    def preview(self, endpoint: Endpoint, change: Change) -> dict:
        return {"op": change.op, "expected": change.expected_resource_version}

    def record_replicas(self, samples, at=None) -> None:
        self._check("record_replicas")
        at = at or self.clock()
        self.replicas.extend((at, e, str(v), int(n)) for e, v, n, _ in samples)

    def replica_history(self, endpoint: str, start: datetime, end: datetime) -> list[tuple[datetime, str, int]]:
        self._check("replica_history")
        return sorted((at, v, n) for at, e, v, n in self.replicas
                      if e == endpoint and start <= at <= end)


# -- audit ------------------------------------------------------------------------------------------------
class FakeAuditTrail(AuditTrail, _Failing):
    """A real hash chain in a list."""

    def __init__(self, clock=None):
        self.rows: list[dict] = []
        self.clock = clock or FakeClock()
        self.fail = {}

    def append(self, *, actor: str, action: str, target: str, result: str, reason: str = "", error: str = "",
               before: Any = None, after: Any = None, gates: Any = None, details: Any = None) -> AuditEntry:
        self._check("append")
        prev = self.rows[-1]["hash"] if self.rows else GENESIS
        row = {"seq": len(self.rows) + 1, "ts": iso(self.clock()), "actor": actor, "action": action,
               "target": target, "result": result, "reason": reason or "", "error": error or "",
               "before": canonical(before), "after": canonical(after), "gates": canonical(gates),
               "details": canonical(details), "prev_hash": prev}
        row["hash"] = entry_hash(prev, row)
        self.rows.append(row)
        return self._entry(row)

    @staticmethod
    def _entry(row: dict) -> AuditEntry:
        import json

        load = json.loads
        return AuditEntry(row["seq"], row["ts"], row["actor"], row["action"], row["target"], row["result"],
                          row["reason"], row["error"], load(row["before"]), load(row["after"]), load(row["gates"]),
                          load(row["details"]), row["prev_hash"], row["hash"])

    def count(self) -> int:
        return len(self.rows)

    def entries(self, *, limit: int | None = 500, actor=None, action=None, target_contains=None, result=None,
                since=None, until=None, endpoint=None, model=None, version=None) -> list[AuditEntry]:
        self._check("entries")
        out = []
        for row in reversed(self.rows):
            e = self._entry(row)
            m, versions = entry_subjects(e)
            if ((actor and e.actor != actor) or (action and e.action != action) or (result and e.result != result)
                    or (target_contains and target_contains not in e.target) or (endpoint and e.target != endpoint)
                    or (since and e.ts < since) or (until and e.ts > until) or (model and m != model)
                    or (version and version not in versions)):
                continue
            out.append(e)
            if limit and len(out) >= limit:
                break
        return out

    def targets(self) -> list[str]:
        return sorted({r["target"] for r in self.rows})

    def head_at(self, seq: int) -> str | None:
        return next((r["hash"] for r in self.rows if r["seq"] == int(seq)), None)

    def verify(self, *, start: VerifyResult | None = None) -> VerifyResult:
        prev, n = GENESIS, 0
        for row in self.rows:
            n += 1
            if row["seq"] != n or row["prev_hash"] != prev or entry_hash(prev, row) != row["hash"]:
                return VerifyResult(False, n - 1, row["seq"], f"entry {row['seq']} is broken", prev)
            prev = row["hash"]
        return VerifyResult(True, n, None, "", prev)


# -- approvals --------------------------------------------------------------------------------------------
class FakeApprovals(ApprovalRepository, _Failing):
    def __init__(self, clock=None):
        self.rows: dict[int, ApprovalRequest] = {}
        self.ids = itertools.count(1)
        self.clock = clock or FakeClock()
        self.fail = {}

    def create(self, *, endpoint, model, action, params, requester, reason, plan_hash, plan, ttl) -> ApprovalRequest:
        self._check("create")
        now = self.clock()
        rid = next(self.ids)
        import json

        self.rows[rid] = ApprovalRequest(rid, endpoint, model, action, dict(params), requester, reason, plan_hash,
                                         json.loads(canonical(plan)), now, now + ttl, "pending", None, None, None, 1)
        return self.rows[rid]

    def get(self, request_id: int) -> ApprovalRequest:
        self._check("get")
        if request_id not in self.rows:
            raise NotFound(f"no approval request #{request_id}", source=self.source)
        return self.rows[request_id]

    def list(self, *, status=None, endpoint=None, limit: int = 500) -> list[ApprovalRequest]:
        self._check("list")
        rows = [r for r in sorted(self.rows.values(), key=lambda r: -r.id)
                if (not status or r.status == status) and (not endpoint or r.endpoint == endpoint)]
        return rows[:limit]

    def transition(self, request_id: int, *, from_status: str, to_status: str, row_version: int, by=None,
                   reason=None) -> bool:
        self._check("transition")
        r = self.rows.get(request_id)
        if r is None:
            raise NotFound(f"no approval request #{request_id}", source=self.source)
        if r.status != from_status or r.row_version != row_version:
            return False
        extra = {"decided_by": by, "decided_at": self.clock(), "decision_reason": reason or ""} if by else {}
        self.rows[request_id] = replace(r, status=to_status, row_version=row_version + 1, **extra)
        return True


# -- serving history and live metrics -----------------------------------------------------------------------
class FakeServingHistory(ServingHistory, _Failing):
    def __init__(self):
        self.by_endpoint: dict[str, list[ServedState]] = {}
        self.fail = {}

    def record(self, entry: ServedState) -> None:
        self._check("record")
        rows = self.by_endpoint.setdefault(entry.endpoint, [])
        bisect.insort(rows, entry, key=lambda e: e.at)

    def changes(self, endpoint: str, start: datetime | None = None, end: datetime | None = None
                ) -> list[ServedState]:
        self._check("changes")
        return [e for e in self.by_endpoint.get(endpoint, [])
                if (start is None or e.at >= start) and (end is None or e.at <= end)]


class FakeLiveMetrics(LiveMetrics):
    def __init__(self, values: dict[tuple[str, str, str], float] | None = None):
        self.values = dict(values or {})
        self.asked: list[tuple[str, str, str]] = []

    def current(self, endpoint: str, version: str, metric: str) -> float | None:
        self.asked.append((endpoint, version, metric))
        return self.values.get((endpoint, version, metric))


# -- prediction log ---------------------------------------------------------------------------------------
from services.predictions import (  # noqa: E402 - appended with the prediction log
    LabelResult,
    PredictionLog,
    Rollup,
    RollupDelta,
    WriteResult,
    label_contribution,
    rollup_deltas,
    rollup_key,
)
from services.predictions.histograms import Cell, HistogramCell, histogram_deltas, label_deltas, period_of  # noqa: E402,E501


class FakePredictionLog(PredictionLog, _Failing):
    """The prediction log in memory, with the SQL adapter's semantics: exactly once per (request_id, row),
    rollups added only for rows really stored, labels that change nothing the second time (a corrected label
    replaces the old one's contribution), unknown ids reported, ``start <= at < end`` windows, newest first."""

    source = "fake prediction log"

    def __init__(self, clock=None):
        self.clock = clock or FakeClock()
        self.stored: dict[tuple[str, int], Any] = {}
        self.rollup_map: dict[tuple, Any] = {}
        self.profiles: dict[tuple[str, str], Any] = {}
        self.hist_map: dict[tuple, Any] = {}
        self.fail = {}

    def _profile_of(self, model, version):
        return self.profiles.get((model, None if version is None else str(version)))

    def _add(self, deltas) -> None:
        for key, d in deltas.items():
            acc = self.rollup_map.setdefault(key, RollupDelta())
            acc.count += d.count
            acc.errors += d.errors
            acc.latency_sum_ms += d.latency_sum_ms
            acc.latency_buckets = [a + b for a, b in zip(acc.latency_buckets, d.latency_buckets, strict=True)]
            acc.add_label((d.labelled, d.correct, d.abs_error_sum, d.sq_error_sum))
            acc.prediction_bins = [a + b for a, b in zip(acc.prediction_bins, d.prediction_bins, strict=True)]

    def write(self, rows):
        self._check("write")
        new = []
        for r in rows:
            key = (str(r.request_id), int(r.row))
            if key not in self.stored:
                self.stored[key] = r
                new.append(r)
        self._add(rollup_deltas(new, self._profile_of))
        for key, cell in histogram_deltas(new, self._profile_of).items():
            self.hist_map.setdefault(key, Cell()).merge(cell)
        return WriteResult(stored=len(new), duplicates=len(rows) - len(new))

    def add_labels(self, labels):
        from services.errors import Invalid

        self._check("add_labels")
        if any(label is None for _, _, label in labels):
            raise Invalid("a label is null: send the ground truth", source=self.source)
        unknown: list[str] = []
        changed: set[tuple[str, int]] = set()
        deltas: dict = {}
        relabelled: list = []
        now = self.clock()
        for rid, row, label in labels:
            keys = sorted(k for k in self.stored if k[0] == str(rid) and (row is None or k[1] == int(row)))
            if not keys and str(rid) not in unknown:
                unknown.append(str(rid))
            for key in keys:
                r = self.stored[key]
                if r.label is not None and r.label == label:
                    continue
                d = deltas.setdefault(rollup_key(r), RollupDelta())
                if r.label is not None:
                    d.add_label(label_contribution(r.prediction, r.label), -1)
                d.add_label(label_contribution(r.prediction, label))
                relabelled.append((r.at, r.endpoint, r.model, r.version, r.role, r.label, label))
                self.stored[key] = replace(r, label=label, labelled_at=now)
                changed.add(key)
        self._add(deltas)
        for key, cell in label_deltas(relabelled, self._profile_of).items():
            self.hist_map.setdefault(key, Cell()).merge(cell)
        return LabelResult(stored=len(changed), unknown=unknown)

    def rows(self, endpoint, *, start=None, end=None, request_id=None, limit=1000):
        self._check("rows")
        out = [r for r in self.stored.values() if r.endpoint == endpoint
               and (start is None or r.at >= start) and (end is None or r.at < end)
               and (request_id is None or r.request_id == request_id)]
        out.sort(key=lambda r: (r.request_id, r.row))
        out.sort(key=lambda r: r.at, reverse=True)
        return out[:limit] if limit else out

    def rollups(self, endpoint, start, end):
        self._check("rollups")
        out = [Rollup(minute=m, endpoint=ep, version=v, role=role, count=d.count, errors=d.errors,
                      latency_sum_ms=d.latency_sum_ms, latency_buckets=tuple(d.latency_buckets),
                      labelled=d.labelled, correct=d.correct, abs_error_sum=d.abs_error_sum,
                      sq_error_sum=d.sq_error_sum, prediction_bins=tuple(d.prediction_bins))
               for (m, ep, v, role), d in self.rollup_map.items() if ep == endpoint and start <= m < end]
        return sorted(out, key=lambda r: (r.minute, r.version or "", r.role))

    def purge(self, before):
        self._check("purge")
        old = [k for k, r in self.stored.items() if r.at < before]
        for k in old:
            del self.stored[k]
        return len(old)

    def served(self, endpoint, start, end):
        self._check("served")
        from services.predictions import Traffic

        acc: dict[tuple, list] = {}
        for (m, ep, v, role), d in self.rollup_map.items():
            if ep == endpoint and start <= m < end:
                a = acc.setdefault((v, role), [0, 0, 0, 0, 0.0, 0.0])
                for i, x in enumerate((d.count, d.errors, d.labelled, d.correct, d.abs_error_sum, d.sq_error_sum)):
                    a[i] += x
        return [Traffic(v, role, *a) for (v, role), a in sorted(acc.items(), key=lambda kv: (kv[0][0] or "",
                                                                                              kv[0][1]))]

    def save_profile(self, profile):
        self._check("save_profile")
        return self.profiles.setdefault((profile.model, str(profile.version)), profile)

    def profile(self, model, version):
        self._check("profile")
        return self.profiles.get((model, str(version)))

    def histograms(self, endpoint, start, end, *, version=None, granularity="hour"):
        self._check("histograms")
        period_of(start, granularity)  # validates the granularity
        acc: dict[tuple, Any] = {}
        for (hour, ep, v, role, feature), cell in self.hist_map.items():
            if ep != endpoint or not (start <= hour < end) or (version is not None and v != str(version)):
                continue
            acc.setdefault((period_of(hour, granularity), v, role, feature), Cell()).merge(cell)
        return [HistogramCell(p, v, role, f, tuple(c.counts), c.total, c.total_sq)
                for (p, v, role, f), c in sorted(acc.items(), key=lambda kv: (kv[0][0], kv[0][1] or "", *kv[0][2:]))]


# -- alerts -----------------------------------------------------------------------------------------------
from services.alerts import Alert, AlertStore  # noqa: E402 - this section's own imports


class FakeAlertStore(AlertStore, _Failing):
    """The SQL store's semantics in a list: one firing alert per endpoint and rule, resolved in place."""

    def __init__(self):
        self.rows: list[Alert] = []
        self.fail = {}

    def _firing(self, endpoint, rule):
        return next((i for i, a in enumerate(self.rows) if (a.endpoint, a.rule, a.state) == (endpoint, rule,
                                                                                               "firing")), None)

    def fire(self, endpoint, rule, at, value, summary):
        self._check("fire")
        i = self._firing(endpoint, rule.name)
        if i is not None:
            self.rows[i] = replace(self.rows[i], last_value=value, summary=summary)
            return self.rows[i]
        alert = Alert(id=str(len(self.rows) + 1), endpoint=endpoint, rule=rule.name, severity=rule.severity,
                      state="firing", started_at=at, value=value, last_value=value, summary=summary)
        self.rows.append(alert)
        return alert

    def resolve(self, endpoint, rule_name, at):
        self._check("resolve")
        i = self._firing(endpoint, rule_name)
        if i is None:
            return None
        self.rows[i] = replace(self.rows[i], state="resolved", resolved_at=at)
        return self.rows[i]

    def alerts(self, *, endpoint=None, state=None, start=None, end=None, limit=500):
        self._check("alerts")
        out = [a for a in self.rows if (endpoint is None or a.endpoint == endpoint)
               and (state is None or a.state == state) and (end is None or a.started_at < end)
               and (start is None or a.resolved_at is None or a.resolved_at >= start)]
        out.sort(key=lambda a: (a.started_at, int(a.id)), reverse=True)
        return out[:limit] if limit else out

    def get(self, alert_id):
        self._check("get")
        return next((a for a in self.rows if a.id == str(alert_id)), None)

    def acknowledge(self, alert_id, actor_subject, at):
        self._check("acknowledge")
        i = next((i for i, a in enumerate(self.rows) if a.id == str(alert_id)), None)
        if i is None:
            raise NotFound(f"no alert {alert_id!r}", source=self.source)
        if self.rows[i].acknowledged_by is None:
            self.rows[i] = replace(self.rows[i], acknowledged_by=actor_subject, acknowledged_at=at)
        return self.rows[i]


# -- retraining -------------------------------------------------------------------------------------------
class FakeRetrainer(Retrainer, _Failing):
    """Records every request; runs start ``queued`` and move through ``states`` on each ``status`` read."""

    source = "fake retrainer"
    backend = "fake"

    def __init__(self, states: tuple[str, ...] = ("running", "succeeded"), new_version: str | None = "9"):
        self.requests: list = []
        self.states = states
        self.new_version = new_version
        self.reads: dict[str, int] = {}
        self.fail = {}

    def trigger(self, request):
        self._check("trigger")
        self.requests.append(request)
        run_id = f"fake-{len(self.requests)}"
        self.reads[run_id] = 0
        return RetrainRun(run_id, "queued", request, backend=self.backend)

    def status(self, run_id: str):
        self._check("status")
        if run_id not in self.reads:
            raise NotFound(f"no run {run_id!r}", source=self.source)
        n = self.reads[run_id] = min(self.reads[run_id] + 1, len(self.states))
        state = self.states[n - 1] if n else "queued"
        request = self.requests[int(run_id.split("-")[1]) - 1]
        return RetrainRun(run_id, state, request, new_version=self.new_version if state == "succeeded" else None,
                          backend=self.backend)
