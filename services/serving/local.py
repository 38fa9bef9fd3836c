"""Local serving backend: endpoint state kept in the console database.

The embedded default. ``resource_version`` is an integer bumped by every
write; a write is ``UPDATE endpoints ... WHERE name = :n AND resource_version
= :seen``, so of two concurrent writers exactly one changes a row.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, insert, select, update

from services.clock import Clock, iso, parse_iso, utcnow
from services.errors import Conflict, Invalid, NotFound, PreconditionFailed
from services.history import ServedState
from services.history.sql import record_change
from services.serving import Change, Condition, Endpoint, Revision, Scaling, ScalingStatus, ServingBackend
from services.store.db import endpoint_revisions, endpoints, guarded, replica_samples, writing

SOURCE = "local serving backend"
MAX_REVISIONS_SHOWN = 50
METRIC = "concurrency"  # the gateway's workers scale on requests in flight per replica
GATEWAY = "local gateway"
FRESH = timedelta(seconds=30)  # a replica sample older than this: the gateway is not running (it samples every 5 s)
KEEP_SAMPLES = timedelta(days=8)
_NOTES = {"set_scaling": "set scaling"}
DEFAULTS = {"min_replicas": 1, "max_replicas": min(4, os.cpu_count() or 1), "target": 1}  # GatewayConfig's


class LocalServingBackend(ServingBackend):
    name = "local"
    source = SOURCE
    needs_storage_uri = False
    creates_endpoints = True
    records_history = True  # each write adds its serving_changes row in the same transaction

    def __init__(self, engine: Engine, *, base_url: str = "http://localhost:8080", clock: Clock = utcnow):
        self.engine = engine
        self.base_url = base_url.rstrip("/")
        self.clock = clock

    # -- setup (demo seed, tests) ------------------------------------------
    def ensure_endpoint(self, name: str, model: str, stable_version: str, *, canary_version: str | None = None,
                        canary_weight: int = 0, replicas: int = 1, actor: str = "seed") -> bool:
        """Create the endpoint if it does not exist. Returns True when created."""
        if not name or "/" in name:
            raise Invalid("endpoint names are non-empty and have no '/'", source=SOURCE)
        at = self.clock()
        now = iso(at)
        with guarded("creating an endpoint", SOURCE), writing(self.engine) as conn:
            if conn.execute(select(endpoints.c.name).where(endpoints.c.name == name)).first():
                return False
            conn.execute(insert(endpoints).values(
                name=name, model=model, stable_version=str(stable_version),
                canary_version=str(canary_version) if canary_version else None,
                canary_weight=int(canary_weight) if canary_version else 0, resource_version=1,
                replicas=replicas, url=f"{self.base_url}/v2/models/{name}", ready=True,
                created_at=now, updated_at=now))
            conn.execute(insert(endpoint_revisions).values(
                endpoint=name, resource_version=1, stable_version=str(stable_version),
                canary_version=str(canary_version) if canary_version else None,
                canary_weight=int(canary_weight) if canary_version else 0, at=now, actor=actor,
                note="endpoint created"))
            record_change(conn, ServedState(
                endpoint=name, at=at, stable_version=str(stable_version),
                canary_version=str(canary_version) if canary_version else None,
                canary_weight=int(canary_weight) if canary_version else 0, actor=actor, note="endpoint created",
                source="seed"), backend=self.name)
        return True

    # -- reads ---------------------------------------------------------------
    def list_endpoints(self) -> list[Endpoint]:
        with guarded("reading endpoints", SOURCE), self.engine.connect() as conn:
            rows = conn.execute(select(endpoints).order_by(endpoints.c.name)).mappings().all()
            revs = conn.execute(select(endpoint_revisions).order_by(endpoint_revisions.c.id.desc())
                                ).mappings().all()
        by_ep: dict[str, list] = {}
        for r in revs:
            lst = by_ep.setdefault(r["endpoint"], [])
            if len(lst) < MAX_REVISIONS_SHOWN:
                lst.append(r)
        return [self._endpoint(r, by_ep.get(r["name"], [])) for r in rows]

    def get_endpoint(self, name: str) -> Endpoint:
        with guarded(f"reading endpoint {name!r}", SOURCE), self.engine.connect() as conn:
            return self._read(conn, name)

    def _read(self, conn, name: str) -> Endpoint:
        row = conn.execute(select(endpoints).where(endpoints.c.name == name)).mappings().first()
        if row is None:
            raise NotFound(f"no endpoint named {name!r}", source=SOURCE)
        revs = conn.execute(select(endpoint_revisions).where(endpoint_revisions.c.endpoint == name)
                            .order_by(endpoint_revisions.c.id.desc()).limit(MAX_REVISIONS_SHOWN)
                            ).mappings().all()
        return self._endpoint(row, revs)

    def _endpoint(self, row, revs) -> Endpoint:
        updated = parse_iso(row["updated_at"])
        ready = bool(row["ready"])
        return Endpoint(
            name=row["name"],
            model=row["model"],
            stable_version=row["stable_version"],
            canary_version=row["canary_version"],
            canary_weight=int(row["canary_weight"] or 0),
            ready=ready,
            conditions=(Condition("Ready", "True" if ready else "False", "LocalBackend",
                                  "state held by the local serving backend", updated),),
            url=row["url"],
            replicas=row["replicas"],
            revisions=tuple(
                Revision(name=f"r{r['resource_version']}", stable_version=r["stable_version"],
                         canary_version=r["canary_version"], canary_weight=int(r["canary_weight"]),
                         at=parse_iso(r["at"]), actor=r["actor"], note=r["note"] or "",
                         approved_by=r.get("approved_by"))
                for r in revs),
            resource_version=str(row["resource_version"]),
            backend=self.name,
            extra={"updated_at": row["updated_at"]},
            scaling=Scaling(row.get("min_replicas"), row.get("max_replicas"), row.get("scale_metric") or METRIC,
                            row.get("scale_target")),
        )

    # -- writes --------------------------------------------------------------
    def apply(self, name: str, change: Change, *, actor: str, note: str = "", approved_by: str | None = None
              ) -> Endpoint:
        current = self.get_endpoint(name)
        try:
            seen = int(change.expected_resource_version)
        except (TypeError, ValueError) as exc:
            raise Invalid("expected_resource_version must be an integer for the local backend",
                          source=SOURCE) from exc
        if current.resource_version != str(seen):
            raise Conflict(f"endpoint {name!r} changed since it was read (version {seen} → "
                           f"{current.resource_version})", source=SOURCE)
        target = change.target_state(current.state())
        values = self._scaling_values(current, change) if change.op == "set_scaling" else {}
        at = self.clock()
        now = iso(at)
        with guarded(f"updating endpoint {name!r}", SOURCE), writing(self.engine) as conn:
            result = conn.execute(
                update(endpoints)
                .where(endpoints.c.name == name, endpoints.c.resource_version == seen)
                .values(stable_version=target.stable_version, canary_version=target.canary_version,
                        canary_weight=target.canary_weight, resource_version=seen + 1, updated_at=now, **values))
            if result.rowcount != 1:
                raise Conflict(f"endpoint {name!r} was changed by someone else at the same moment",
                               source=SOURCE)
            conn.execute(insert(endpoint_revisions).values(
                endpoint=name, resource_version=seen + 1, stable_version=target.stable_version,
                canary_version=target.canary_version, canary_weight=target.canary_weight, at=now,
                actor=actor, approved_by=approved_by, note=note or _NOTES.get(change.op, change.op)))
            record_change(conn, ServedState(
                endpoint=name, at=at, stable_version=target.stable_version, canary_version=target.canary_version,
                canary_weight=target.canary_weight, actor=actor, approved_by=approved_by, note=note or change.op,
                source="backend"), backend=self.name)
            # Read back inside the same transaction: this is *our* write, not whatever lands after it.
            return self._read(conn, name)

    @staticmethod
    def _scaling_values(current: Endpoint, change: Change) -> dict:
        """The scaling columns a ``set_scaling`` writes (its None fields unchanged); refuses what the gateway's
        workers cannot do."""
        new = change.scaling or Scaling()
        if new.metric not in (None, METRIC):
            raise Invalid(f"the local gateway scales on {METRIC} (requests in flight per replica), not "
                          f"{new.metric}", source=SOURCE)
        if new.min_replicas == 0:
            raise PreconditionFailed("the local gateway keeps at least one worker per served version: it does not "
                                     "scale to zero (a minimum of 1 is the least)", source=SOURCE)
        s = (current.scaling or Scaling()).merged(new)
        for what, value, low in (("minimum", s.min_replicas, 0), ("maximum", s.max_replicas, 1),
                                 ("target", s.target, 1)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
                raise Invalid(f"the {what} replicas must be a whole number of at least {low}, got {value!r}",
                              source=SOURCE)
        if s.min_replicas is not None and s.max_replicas is not None and s.min_replicas > s.max_replicas:
            raise Invalid(f"the minimum replicas ({s.min_replicas}) would be above the maximum ({s.max_replicas})",
                          source=SOURCE)
        return {"min_replicas": s.min_replicas, "max_replicas": s.max_replicas, "scale_metric": s.metric,
                "scale_target": s.target}

    def preview(self, endpoint: Endpoint, change: Change) -> dict:
        target = change.target_state(endpoint.state())
        where = {"name": endpoint.name, "resource_version": int(change.expected_resource_version)}
        if change.op == "set_scaling":
            new = {k: v for k, v in self._scaling_values(endpoint, change).items()
                   if v != getattr(endpoint.scaling, {"scale_metric": "metric", "scale_target": "target"}.get(k, k),
                                   None)}
            return {"UPDATE endpoints WHERE": where,
                    "SET": {**new, "resource_version": int(change.expected_resource_version) + 1}}
        return {"UPDATE endpoints WHERE": where,
                "SET": {**target.as_dict(), "resource_version": int(change.expected_resource_version) + 1}}

    # -- replicas (the gateway's worker processes) ------------------------------------------------------------
    def record_replicas(self, samples, at: datetime | None = None) -> None:
        """One sample per (endpoint, version, replicas, in_flight) at ``at`` (the gateway, every few seconds);
        samples older than :data:`KEEP_SAMPLES` go at the same time."""
        at = at or self.clock()
        rows = [{"endpoint": e, "version": str(v), "at": iso(at), "replicas": int(n), "in_flight": int(f)}
                for e, v, n, f in samples]
        if not rows:
            return
        with guarded("recording replica counts", SOURCE), writing(self.engine) as conn:
            conn.execute(insert(replica_samples), rows)
            conn.execute(delete(replica_samples).where(replica_samples.c.at < iso(at - KEEP_SAMPLES)))

    def _latest(self, conn, name: str):
        last = conn.execute(select(replica_samples.c.at).where(replica_samples.c.endpoint == name)
                            .order_by(replica_samples.c.at.desc()).limit(1)).scalar()
        if last is None:
            return None, []
        return last, conn.execute(select(replica_samples).where(replica_samples.c.endpoint == name,
                                                                replica_samples.c.at == last)
                                  .order_by(replica_samples.c.version)).mappings().all()

    def scaling_status(self, endpoint: Endpoint) -> ScalingStatus:
        """The gateway's latest replica sample (never raises: what cannot be read is said in ``note``)."""
        from services.errors import ConsoleError

        try:
            with guarded(f"reading the replicas of {endpoint.name!r}", SOURCE), self.engine.connect() as conn:
                last, rows = self._latest(conn, endpoint.name)
        except ConsoleError as exc:
            return ScalingStatus(note=f"replica counts unavailable ({exc.source}: {exc.message})")
        if last is None:
            return ScalingStatus(note="no replica counts recorded: the local gateway (python -m services serve) "
                                      "has not served this endpoint")
        age = self.clock() - parse_iso(last)
        if age > FRESH:
            return ScalingStatus(note=f"the local gateway is not running: its last replica count is from {last} "
                                      f"({int(age.total_seconds())} s ago)")
        if all(int(r["replicas"]) == 0 for r in rows):
            return ScalingStatus(note=f"the local gateway stopped at {last}: no worker runs")
        s = endpoint.scaling or Scaling()
        lo = max(1, s.min_replicas if s.min_replicas is not None else DEFAULTS["min_replicas"])
        hi = max(lo, s.max_replicas if s.max_replicas is not None else DEFAULTS["max_replicas"])
        target = max(1, s.target or DEFAULTS["target"])
        desired = sum(max(lo, min(hi, -(-int(r["in_flight"]) // target))) for r in rows)
        traffic = endpoint.traffic()
        return ScalingStatus(source=GATEWAY, current_replicas=sum(int(r["replicas"]) for r in rows),
                             desired_replicas=desired,
                             revisions=tuple((f"v{r['version']}", traffic.get(r["version"]), int(r["replicas"]))
                                             for r in rows))

    def replica_history(self, endpoint: str, start: datetime, end: datetime) -> list[tuple[datetime, str, int]]:
        with guarded(f"reading the replica history of {endpoint!r}", SOURCE), self.engine.connect() as conn:
            rows = conn.execute(select(replica_samples.c.at, replica_samples.c.version, replica_samples.c.replicas)
                                .where(replica_samples.c.endpoint == endpoint, replica_samples.c.at >= iso(start),
                                       replica_samples.c.at <= iso(end))
                                .order_by(replica_samples.c.at, replica_samples.c.version)).all()
        return [(parse_iso(at), str(v), int(n)) for at, v, n in rows]
