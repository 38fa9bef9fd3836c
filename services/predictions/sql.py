"""The prediction log on SQLAlchemy (SQLite or PostgreSQL): tables ``predictions`` and ``prediction_rollups``.

Exactly once: ``(request_id, row)`` is the primary key and rows are inserted with ``ON CONFLICT DO NOTHING
... RETURNING`` (both dialects), so what was really inserted is known inside the same writing transaction
and only those rows are added to their rollups, by ``INSERT ... ON CONFLICT (endpoint, minute, version, role)
DO UPDATE SET count = count + excluded.count, ...``: concurrent writers (several ingest replicas) never
read-modify-write a counter. Writers insert rows and upsert rollups in key order, so two transactions wait
for each other instead of deadlocking. Both statements are built once per log and executed with a list of
parameter sets (SQLAlchemy's "insertmanyvalues" batches the rows into multi-row ``VALUES`` and still returns
what was inserted), so a write compiles nothing after the first.

Labels update their rows (locked ``FOR UPDATE`` on PostgreSQL; SQLite writers are serialised by ``BEGIN
IMMEDIATE``) and add the difference they make to their minute's rollup: the same label twice changes
nothing, a corrected label replaces the old one's contribution; a label naming a request (or a row of it) that is
not logged reports the request id in ``unknown``. Times are :func:`services.clock.iso` text
(fixed width, sorts as time); an unknown version is ``""`` in the rollup key (NULL never conflicts).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from services.clock import Clock, iso, parse_iso, utcnow
from services.drift.bins import Profile
from services.errors import Invalid
from services.predictions import (
    LATENCY_BUCKETS_MS,
    LabelResult,
    PredictionLog,
    PredictionRow,
    Rollup,
    RollupDelta,
    RollupKey,
    Traffic,
    WriteResult,
    in_lock_order,
    label_contribution,
    minute_of,
    rollup_deltas,
)
from services.predictions.histograms import (
    PREDICTION_SLOTS,
    HistogramCell,
    histogram_deltas,
    label_deltas,
    period_of,
)
from services.store.db import (
    HISTOGRAM_BIN_COLUMNS,
    LATENCY_BUCKET_COLUMNS,
    PREDICTION_BIN_COLUMNS,
    feature_histograms,
    guarded,
    prediction_rollups,
    predictions,
    reference_profiles,
    writing,
)

SOURCE = "prediction log"
CHUNK = 500  # request ids per IN list of a labels read
COUNTERS = ("count", "errors", "latency_sum_ms", *LATENCY_BUCKET_COLUMNS, "labelled", "correct", "abs_error_sum",
            "sq_error_sum", *PREDICTION_BIN_COLUMNS)
assert len(LATENCY_BUCKET_COLUMNS) == len(LATENCY_BUCKETS_MS), "one rollup column per latency bucket"
assert len(PREDICTION_BIN_COLUMNS) == PREDICTION_SLOTS, "one rollup column per prediction slot"
MISS_TTL = 60.0  # seconds a version without a profile is not looked up again
ProfileBuilder = Callable[[str, str], Profile | None]


def dumps(value: Any) -> str:
    """JSON text of a feature dict, prediction or label (key order kept: features stay in signature order)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _canonical(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True, default=str)


class SqlPredictionLog(PredictionLog):
    source = SOURCE

    def __init__(self, engine: Engine, *, clock: Clock = utcnow, build_profile: ProfileBuilder | None = None):
        """``build_profile(model, version)``: called (outside any transaction) for a version that has no stored
        profile when its rows are written (e.g. derive it from the registry's reference data and save it)."""
        self.engine = engine
        self.clock = clock
        self.build_profile = build_profile
        self._profiles: dict[tuple[str, str], tuple[Profile | None, float]] = {}
        self._profiles_lock = threading.Lock()
        insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        # built once: executed with a list of parameter sets, they hit SQLAlchemy's compiled cache every time
        self._insert_rows = (insert(predictions).on_conflict_do_nothing(index_elements=["request_id", "row"])
                             .returning(predictions.c.request_id, predictions.c.row))
        upsert = insert(prediction_rollups)
        c, ex = prediction_rollups.c, upsert.excluded
        self._upsert_rollups = upsert.on_conflict_do_update(index_elements=["endpoint", "minute", "version", "role"],
                                                            set_={name: c[name] + ex[name] for name in COUNTERS})
        hist = insert(feature_histograms)
        h, hx = feature_histograms.c, hist.excluded
        self._upsert_histograms = hist.on_conflict_do_update(
            index_elements=["endpoint", "hour", "version", "role", "feature"],
            set_={name: h[name] + hx[name] for name in (*HISTOGRAM_BIN_COLUMNS, "total", "total_sq")})

    # -- write ---------------------------------------------------------------------------------------------
    def write(self, rows: Sequence[PredictionRow]) -> WriteResult:
        if not rows:
            return WriteResult(0, 0, frozenset())
        unique: dict[tuple[str, int], PredictionRow] = {}
        for r in rows:
            unique.setdefault((str(r.request_id), int(r.row)), r)
        keys = sorted(unique)
        values = [_row_values(unique[k]) for k in keys]
        profiles = self._profiles_of(unique.values())
        lookup = lambda model, version: profiles.get((model, version))  # noqa: E731
        with guarded("writing predictions", SOURCE), writing(self.engine) as conn:
            inserted = {(rid, int(n)) for rid, n in conn.execute(self._insert_rows, values)}
            new = [unique[k] for k in sorted(inserted)]
            self._add_to_rollups(conn, rollup_deltas(new, lookup))
            self._add_to_histograms(conn, histogram_deltas(new, lookup))
        return WriteResult(stored=len(new), duplicates=len(rows) - len(new), inserted=frozenset(inserted))

    def _add_to_histograms(self, conn: Connection, cells: dict) -> None:
        """In lock order, after the rollups: every writer takes the same locks in the same order."""
        if cells:
            conn.execute(self._upsert_histograms, [
                {"endpoint": ep, "hour": iso(hour), "version": "" if v is None else str(v), "role": role,
                 "feature": f, **dict(zip(HISTOGRAM_BIN_COLUMNS, cell.counts, strict=True)),
                 "total": cell.total, "total_sq": cell.total_sq}
                for (hour, ep, v, role, f), cell in cells.items()])

    def _add_to_rollups(self, conn: Connection, deltas: dict[RollupKey, RollupDelta]) -> None:
        if deltas:  # in lock order: executemany keeps the parameter sets' order
            conn.execute(self._upsert_rollups, [_rollup_values(key, d) for key, d in deltas.items()])

    # -- labels --------------------------------------------------------------------------------------------
    def add_labels(self, labels: Sequence[tuple[str, int | None, Any]]) -> LabelResult:
        for rid, _row, label in labels:
            if label is None:
                raise Invalid(f"the label of request {rid!r} is null: send the ground truth", source=SOURCE)
        ids = sorted({str(rid) for rid, _, _ in labels})
        if not ids:
            return LabelResult(0, [])
        t = predictions.c
        with guarded("storing labels", SOURCE), writing(self.engine) as conn:
            found: dict[str, list] = {}
            for i in range(0, len(ids), CHUNK):
                q = (select(t.request_id, t.row, t.endpoint, t.at, t.model, t.version, t.role, t.prediction, t.label)
                     .where(t.request_id.in_(ids[i:i + CHUNK])).order_by(t.request_id, t.row))
                if conn.dialect.name == "postgresql":
                    q = q.with_for_update()
                for r in conn.execute(q).mappings():
                    found.setdefault(r["request_id"], []).append(dict(r))
            current = {(r["request_id"], r["row"]): r["label"] for rs in found.values() for r in rs}
            unknown: list[str] = []
            changed: dict[tuple[str, int], str] = {}
            deltas: dict[RollupKey, RollupDelta] = {}
            relabelled: list[tuple] = []
            for rid, row, label in labels:
                targets = [r for r in found.get(str(rid), []) if row is None or r["row"] == int(row)]
                if not targets:
                    if str(rid) not in unknown:
                        unknown.append(str(rid))
                    continue
                text = _canonical(label)
                for r in targets:
                    key = (r["request_id"], r["row"])
                    old = current[key]
                    if old is not None and _canonical(json.loads(old)) == text:
                        continue  # the same label again: nothing changes
                    pred = json.loads(r["prediction"])
                    d = deltas.setdefault((minute_of(parse_iso(r["at"])), r["endpoint"], r["version"], r["role"]),
                                          RollupDelta())
                    if old is not None:  # a corrected label: its old contribution goes
                        d.add_label(label_contribution(pred, json.loads(old)), -1)
                    d.add_label(label_contribution(pred, label))
                    relabelled.append((parse_iso(r["at"]), r["endpoint"], r["model"], r["version"], r["role"],
                                       None if old is None else json.loads(old), label))
                    current[key] = changed[key] = dumps(label)
            if changed:
                conn.execute(update(predictions)
                             .where(t.request_id == bindparam("rid"), t.row == bindparam("n"))
                             .values(label=bindparam("lbl"), labelled_at=bindparam("when")),
                             [{"rid": k[0], "n": k[1], "lbl": v, "when": iso(self.clock())}
                              for k, v in sorted(changed.items())])
                self._add_to_rollups(conn, in_lock_order(deltas))
                profiles = self._profiles_of([_Version(m, v) for _, _, m, v, *_ in relabelled])
                self._add_to_histograms(conn, label_deltas(
                    relabelled, lambda model, version: profiles.get((model, version))))
        return LabelResult(stored=len(changed), unknown=unknown)

    # -- reads ---------------------------------------------------------------------------------------------
    def rows(self, endpoint: str, *, start: datetime | None = None, end: datetime | None = None,
             request_id: str | None = None, limit: int = 1000) -> list[PredictionRow]:
        t = predictions.c
        q = select(predictions).where(t.endpoint == endpoint)
        if start is not None:
            q = q.where(t.at >= iso(start))
        if end is not None:
            q = q.where(t.at < iso(end))
        if request_id is not None:
            q = q.where(t.request_id == request_id)
        q = q.order_by(t.at.desc(), t.request_id, t.row)
        if limit:
            q = q.limit(limit)
        with guarded(f"reading the predictions of {endpoint!r}", SOURCE), self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(q).mappings()]

    def rollups(self, endpoint: str, start: datetime, end: datetime) -> list[Rollup]:
        c = prediction_rollups.c
        q = (select(prediction_rollups)
             .where(c.endpoint == endpoint, c.minute >= iso(start), c.minute < iso(end))
             .order_by(c.minute, c.version, c.role))
        with guarded(f"reading the prediction rollups of {endpoint!r}", SOURCE), self.engine.connect() as conn:
            return [_rollup(r) for r in conn.execute(q).mappings()]

    # -- reference profiles and histograms ------------------------------------------------------------------
    def save_profile(self, profile: Profile) -> Profile:
        insert = postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert
        stmt = insert(reference_profiles).values(
            model=profile.model, version=str(profile.version), created_at=iso(self.clock()), source=profile.source,
            profile=json.dumps(profile.as_dict(), separators=(",", ":"))).on_conflict_do_nothing()
        with guarded(f"storing the reference profile of {profile.model!r} v{profile.version}", SOURCE), \
                writing(self.engine) as conn:
            conn.execute(stmt)
        with self._profiles_lock:
            self._profiles.pop((profile.model, str(profile.version)), None)
        return self.profile(profile.model, str(profile.version)) or profile

    def profile(self, model: str, version: str) -> Profile | None:
        c = reference_profiles.c
        q = select(c.profile).where(c.model == model, c.version == str(version))
        with guarded(f"reading the reference profile of {model!r} v{version}", SOURCE), self.engine.connect() as conn:
            text = conn.execute(q).scalar()
        return None if text is None else Profile.from_dict(json.loads(text))

    def _profiles_of(self, rows) -> dict[tuple[str, str], Profile]:
        """The profiles of the rows' versions: stored ones are kept (they never change); a version without
        one is built once if a builder is set, else looked up again after MISS_TTL seconds."""
        wanted = {(r.model, str(r.version)) for r in rows if r.model and r.version is not None}
        out: dict[tuple[str, str], Profile] = {}
        now = time.monotonic()
        for key in sorted(wanted):
            with self._profiles_lock:
                cached = self._profiles.get(key)
            if cached is not None and (cached[0] is not None or cached[1] > now):
                if cached[0] is not None:
                    out[key] = cached[0]
                continue
            found = self.profile(*key)
            if found is None and self.build_profile is not None:
                try:
                    found = self.build_profile(*key)
                except Exception:  # noqa: BLE001 - a missing reference must not stop the log: rows still count
                    found = None
            with self._profiles_lock:
                self._profiles[key] = (found, now + MISS_TTL)
            if found is not None:
                out[key] = found
        return out

    def histograms(self, endpoint: str, start: datetime, end: datetime, *, version: str | None = None,
                   granularity: str = "hour") -> list[HistogramCell]:
        from sqlalchemy import func

        period_of(start, granularity)  # validates the granularity
        h = feature_histograms.c
        period = func.substr(h.hour, 1, 10) if granularity == "day" else h.hour
        q = (select(period.label("period"), h.version, h.role, h.feature,
                    *(func.sum(h[c]) for c in HISTOGRAM_BIN_COLUMNS), func.sum(h.total), func.sum(h.total_sq))
             .where(h.endpoint == endpoint, h.hour >= iso(start), h.hour < iso(end))
             .group_by(period, h.version, h.role, h.feature)
             .order_by(period, h.version, h.role, h.feature))
        if version is not None:
            q = q.where(h.version == str(version))
        slots = len(HISTOGRAM_BIN_COLUMNS)
        with guarded(f"reading the feature histograms of {endpoint!r}", SOURCE), self.engine.connect() as conn:
            return [HistogramCell(period=_period(r[0]), version=r[1] or None, role=r[2], feature=r[3],
                                  counts=tuple(int(n) for n in r[4:4 + slots]), total=float(r[4 + slots] or 0.0),
                                  total_sq=float(r[5 + slots] or 0.0))
                    for r in conn.execute(q)]

    def served(self, endpoint: str, start: datetime, end: datetime) -> list[Traffic]:
        from sqlalchemy import func

        c = prediction_rollups.c
        sums = [func.sum(c[name]) for name in ("count", "errors", "labelled", "correct", "abs_error_sum",
                                               "sq_error_sum")]
        q = (select(c.version, c.role, *sums)
             .where(c.endpoint == endpoint, c.minute >= iso(start), c.minute < iso(end))
             .group_by(c.version, c.role).order_by(c.version, c.role))
        with guarded(f"reading the traffic of {endpoint!r}", SOURCE), self.engine.connect() as conn:
            return [Traffic(v or None, role, int(n), int(e), int(lab), int(ok), float(ae), float(se))
                    for v, role, n, e, lab, ok, ae, se in conn.execute(q)]

    def purge(self, before: datetime) -> int:
        """Per endpoint (the rollups name them all), so each delete walks the ``(endpoint, at)`` index."""
        t = predictions.c
        with guarded("purging old predictions", SOURCE), writing(self.engine) as conn:
            endpoints = conn.execute(select(prediction_rollups.c.endpoint).distinct()).scalars().all()
            return sum(conn.execute(delete(predictions).where(t.endpoint == ep, t.at < iso(before))).rowcount or 0
                       for ep in sorted(endpoints))


def _row_values(r: PredictionRow) -> dict:
    return {"request_id": str(r.request_id), "row": int(r.row), "endpoint": r.endpoint, "at": iso(r.at),
            "model": r.model, "version": None if r.version is None else str(r.version), "role": r.role,
            "features": dumps(r.features), "prediction": dumps(r.prediction),
            "latency_ms": None if r.latency_ms is None else float(r.latency_ms), "status": int(r.status),
            "error": r.error or "", "label": None if r.label is None else dumps(r.label),
            "labelled_at": None if r.labelled_at is None else iso(r.labelled_at)}


def _rollup_values(key: RollupKey, d: RollupDelta) -> dict:
    minute, endpoint, version, role = key
    return {"minute": iso(minute), "endpoint": endpoint, "version": "" if version is None else str(version),
            "role": role, "count": d.count, "errors": d.errors, "latency_sum_ms": d.latency_sum_ms,
            **dict(zip(LATENCY_BUCKET_COLUMNS, d.latency_buckets, strict=True)), "labelled": d.labelled,
            "correct": d.correct, "abs_error_sum": d.abs_error_sum, "sq_error_sum": d.sq_error_sum,
            **dict(zip(PREDICTION_BIN_COLUMNS, d.prediction_bins, strict=True))}


class _Version:
    """What ``_profiles_of`` reads of a row: its model and version."""

    def __init__(self, model, version):
        self.model, self.version = model, version


def _period(text: str) -> datetime:
    return parse_iso(text if len(text) > 10 else text + "T00:00:00.000000Z")


def _row(r) -> PredictionRow:
    return PredictionRow(
        request_id=r["request_id"], row=int(r["row"]), endpoint=r["endpoint"], at=parse_iso(r["at"]),
        version=r["version"], role=r["role"], model=r["model"], features=json.loads(r["features"]),
        prediction=json.loads(r["prediction"]), latency_ms=r["latency_ms"], status=int(r["status"]),
        error=r["error"] or "", label=None if r["label"] is None else json.loads(r["label"]),
        labelled_at=None if r["labelled_at"] is None else parse_iso(r["labelled_at"]))


def _rollup(r) -> Rollup:
    return Rollup(minute=parse_iso(r["minute"]), endpoint=r["endpoint"], version=r["version"] or None,
                  role=r["role"], count=int(r["count"]), errors=int(r["errors"]),
                  latency_sum_ms=float(r["latency_sum_ms"]),
                  latency_buckets=tuple(int(r[c]) for c in LATENCY_BUCKET_COLUMNS), labelled=int(r["labelled"]),
                  correct=int(r["correct"]), abs_error_sum=float(r["abs_error_sum"]),
                  sq_error_sum=float(r["sq_error_sum"]),
                  prediction_bins=tuple(int(r[c]) for c in PREDICTION_BIN_COLUMNS))
