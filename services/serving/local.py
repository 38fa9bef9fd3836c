"""Local serving backend: endpoint state kept in the console database.

The embedded default. ``resource_version`` is an integer bumped by every
write; a write is ``UPDATE endpoints ... WHERE name = :n AND resource_version
= :seen``, so of two concurrent writers exactly one changes a row.
"""

from __future__ import annotations

from sqlalchemy import Engine, insert, select, update

from services.clock import Clock, iso, parse_iso, utcnow
from services.errors import Conflict, Invalid, NotFound
from services.history import ServedState
from services.history.sql import record_change
from services.serving import Change, Condition, Endpoint, Revision, ServingBackend
from services.store.db import endpoint_revisions, endpoints, guarded, writing

SOURCE = "local serving backend"
MAX_REVISIONS_SHOWN = 50


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
        at = self.clock()
        now = iso(at)
        with guarded(f"updating endpoint {name!r}", SOURCE), writing(self.engine) as conn:
            result = conn.execute(
                update(endpoints)
                .where(endpoints.c.name == name, endpoints.c.resource_version == seen)
                .values(stable_version=target.stable_version, canary_version=target.canary_version,
                        canary_weight=target.canary_weight, resource_version=seen + 1, updated_at=now))
            if result.rowcount != 1:
                raise Conflict(f"endpoint {name!r} was changed by someone else at the same moment",
                               source=SOURCE)
            conn.execute(insert(endpoint_revisions).values(
                endpoint=name, resource_version=seen + 1, stable_version=target.stable_version,
                canary_version=target.canary_version, canary_weight=target.canary_weight, at=now,
                actor=actor, approved_by=approved_by, note=note or change.op))
            record_change(conn, ServedState(
                endpoint=name, at=at, stable_version=target.stable_version, canary_version=target.canary_version,
                canary_weight=target.canary_weight, actor=actor, approved_by=approved_by, note=note or change.op,
                source="backend"), backend=self.name)
            # Read back inside the same transaction: this is *our* write, not whatever lands after it.
            return self._read(conn, name)

    def preview(self, endpoint: Endpoint, change: Change) -> dict:
        target = change.target_state(endpoint.state())
        return {"UPDATE endpoints WHERE": {"name": endpoint.name,
                                            "resource_version": int(change.expected_resource_version)},
                "SET": {**target.as_dict(), "resource_version": int(change.expected_resource_version) + 1}}
