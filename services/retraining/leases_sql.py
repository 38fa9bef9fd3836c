"""Retraining leases on SQLAlchemy (SQLite or PostgreSQL): the ``retrain_leases`` table (revision 0010), one row
per endpoint. Taking one is an INSERT (the primary key lets exactly one of two concurrent takers in) or, for a
lease that lapsed, a compare-and-set UPDATE on the row as it was read."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from services.clock import iso, parse_iso
from services.retraining.leases import SOURCE, RetrainLeases, held_by
from services.store.db import guarded, retrain_leases, writing


class SqlRetrainLeases(RetrainLeases):
    def __init__(self, engine: Engine):
        self.engine = engine

    def acquire(self, endpoint: str, holder: str, *, now: datetime, until: datetime) -> None:
        t = retrain_leases
        with guarded("taking the retraining lease", SOURCE):
            try:
                with writing(self.engine) as conn:
                    row = conn.execute(select(t).where(t.c.endpoint == endpoint)).mappings().first()
                    if row is None:
                        conn.execute(insert(t).values(endpoint=endpoint, holder=holder, taken_at=iso(now),
                                                      until=iso(until)))
                        return
                    if parse_iso(row["until"]) > now and row["holder"] != holder:
                        raise held_by(endpoint, row["holder"], parse_iso(row["until"]))
                    done = conn.execute(update(t).where(t.c.endpoint == endpoint, t.c.holder == row["holder"],
                                                        t.c.until == row["until"])
                                        .values(holder=holder, taken_at=iso(now), until=iso(until))).rowcount
                    if done != 1:
                        raise held_by(endpoint, "someone else", until)
            except IntegrityError:  # another taker inserted the row first (between our read and our insert)
                raise held_by(endpoint, "someone else", until) from None

    def release(self, endpoint: str, holder: str) -> None:
        t = retrain_leases
        with guarded("giving the retraining lease back", SOURCE), writing(self.engine) as conn:
            conn.execute(delete(t).where(t.c.endpoint == endpoint, t.c.holder == holder))
