"""Clock-skewed and out-of-order events land in the right place (issue 10), through the real ingest
(``services.ingest.app`` on a real uvicorn server, CloudEvents in binary mode as KServe's logger sends them)
over the test container, on SQLite and PostgreSQL:

* a pair whose ``ce-time`` lies minutes in the past, arriving after later minutes (and the next hour) were
  written, response first: its rows, rollup and hourly feature histograms are those of ITS minute and hour, and
  it is attributed by the serving history at ITS time, not the arrival's;
* a response stamped before its request (clock skew between pods): the latency is unknown (None: never
  negative, and not a 0 ms that would pull the quantiles down) and the row belongs to the request's minute; a
  ``ce-time`` with a UTC offset is read as such;
* labels an hour late join their rows and the rollup and label histogram of the rows' minute and hour; a label
  that comes before its prediction is reported unknown, not kept;
* the incident timeline orders a serving change recorded after a later one (and audit entries written by a
  replica whose clock lags) by time, each change saying what it changed from the one before it in time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
import requests

from services.drift.bins import LABEL, build_profile
from services.history import ServedState
from services.ingest.app import create_app
from tests.conftest import ENDPOINT, MODEL
from tests.integration.test_ingest import bucket, event, post, serving

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)  # the container's endpoint: v1 stable, canary v2 at 20 % from T0
MS = timedelta(milliseconds=1)


def at(hh: int, mm: int, ss: float = 0.0) -> datetime:
    return T0.replace(hour=hh, minute=mm) + timedelta(seconds=ss)


@pytest.fixture
def ingest(container):
    """The ingest over the test container, with reference profiles for v1 and v2 (so rows are binned)."""
    rng = np.random.default_rng(4)
    frame = pd.DataFrame({"mean radius": rng.normal(14, 3, 300), "mean texture": rng.normal(20, 4, 300),
                          "target": rng.integers(0, 2, 300)})
    for version in ("1", "2"):
        container.predictions.save_profile(build_profile(MODEL, version, frame, source="test"))
    with serving(create_app(container)) as base:
        yield base, container


def instances(n: int, seed: int = 0) -> list[dict]:
    return [{"mean radius": 12.0 + seed + i, "mean texture": 18.0 + i} for i in range(n)]


def pair(base: str, rid: str, t_request: datetime, t_response: datetime, n: int = 1, *, response_first=False,
         preds=None, **ext) -> dict:
    req = event("request", rid, {"instances": instances(n)}, t_request, **ext)
    resp = event("response", rid, {"predictions": preds if preds is not None else [1] * n}, t_response, **ext)
    first, second = (resp, req) if response_first else (req, resp)
    r = post(base, first)
    assert r.status_code == 202, r.text
    r = post(base, second)
    assert r.status_code == 200 and r.json()["stored"] == n, r.text
    return r.json()


def counts(log, start: datetime, end: datetime) -> dict:
    """Rollups of the window: (minute, version, role) -> (count, latency_sum_ms, labelled, correct)."""
    return {(u.minute, u.version, u.role): (u.count, u.latency_sum_ms, u.labelled, u.correct)
            for u in log.rollups(ENDPOINT, start, end)}


def hist(log, hour: datetime, feature: str) -> dict:
    """Hourly histogram cells of one feature in one hour: (version, role) -> rows binned."""
    return {(c.version, c.role): sum(c.counts) for c in log.histograms(ENDPOINT, hour, hour + timedelta(hours=1))
            if c.feature == feature}


def test_a_pair_arriving_after_its_minute_and_hour_closed_lands_in_its_own(ingest, clock):
    base, c = ingest
    log = c.predictions
    c.history.record(ServedState(ENDPOINT, at(13, 0), "1", None, 0, actor="alice", note="canary aborted"))
    clock.now = at(13, 4)  # the arrival: every event below comes now
    for i in range(3):  # on time: minute 13:03, after the abort (no version header: the history attributes)
        pair(base, f"on-{i}", at(13, 3, 10 + i), at(13, 3, 10 + i) + 25 * MS)
    # two minutes and an hour boundary late, the response first: ce-time 12:58:30, while the canary still ran
    out = pair(base, "late", at(12, 58, 30), at(12, 58, 30) + 40 * MS, n=2, response_first=True)
    assert out["duplicates"] == 0
    rows = sorted(log.rows(ENDPOINT, request_id="late"), key=lambda r: r.row)
    assert [(r.row, r.at, r.version, r.role, r.latency_ms) for r in rows] == [
        (0, at(12, 58, 30), "1", "unknown", 40.0), (1, at(12, 58, 30), "1", "unknown", 40.0)], \
        "its own time, attributed by the history at 12:58 (a canary ran: the inferred version's role is unknown)"
    assert {r.request_id for r in log.rows(ENDPOINT, start=at(12, 58), end=at(12, 59))} == {"late"}
    assert [(r.version, r.role) for r in log.rows(ENDPOINT, request_id="on-0")] == [("1", "stable")]
    assert counts(log, at(12, 0), at(14, 0)) == {
        (at(12, 58), "1", "unknown"): (2, 80.0, 0, 0),
        (at(13, 3), "1", "stable"): (3, 75.0, 0, 0)}, "no count in the arrival's minute (13:04)"
    (late,) = log.rollups(ENDPOINT, at(12, 58), at(12, 59))
    assert late.latency_buckets[bucket(40.0)] == 2
    for feature in ("mean radius", "mean texture", "__prediction__"):
        assert hist(log, at(12, 0), feature) == {("1", "unknown"): 2}, feature
        assert hist(log, at(13, 0), feature) == {("1", "stable"): 3}, feature


def test_a_response_stamped_before_its_request_has_unknown_latency_in_the_requests_minute(ingest, clock):
    base, c = ingest
    log = c.predictions
    clock.now = at(12, 22)
    # the response's pod clock is 400 ms behind: its ce-time is even in the previous minute
    pair(base, "skew", at(12, 21, 0.1), at(12, 20, 59.7), n=2, version="2", role="canary")
    ist = timezone(timedelta(hours=5, minutes=30))  # a third pod stamps its local time with its offset
    pair(base, "fine", at(12, 21, 5).astimezone(ist), at(12, 21, 5) + 30 * MS, version="2", role="canary")
    lat = {(r.request_id, r.row): r.latency_ms for r in log.rows(ENDPOINT, limit=0)}
    assert lat == {("skew", 0): None, ("skew", 1): None, ("fine", 0): 30.0}, "unknown, never negative or 0"
    assert {r.at for r in log.rows(ENDPOINT, request_id="skew")} == {at(12, 21, 0.1)}, "the request's time"
    assert [r.at for r in log.rows(ENDPOINT, request_id="fine")] == [at(12, 21, 5)], "+05:30 read as such"
    assert counts(log, at(12, 0), at(13, 0)) == {(at(12, 21), "2", "canary"): (3, 30.0, 0, 0)}
    (u,) = log.rollups(ENDPOINT, at(12, 21), at(12, 22))
    assert u.latency_buckets[0] == 0 and sum(u.latency_buckets) == 1 and u.latency_buckets[bucket(30.0)] == 1
    assert u.count == 3, "the skewed rows still count as requests"


def test_labels_an_hour_late_join_their_rows_minute_and_hour(ingest, clock):
    base, c = ingest
    log = c.predictions
    clock.now = at(12, 31)
    early = requests.post(base + "/v1/labels", json=[{"request_id": "lab-b", "label": 1}], timeout=10)
    assert early.json() == {"stored": 0, "unknown": ["lab-b"]}, "a label before its prediction is not kept"
    pair(base, "lab-a", at(12, 30, 10), at(12, 30, 10) + 5 * MS, n=2, preds=[1, 0], version="1", role="stable")
    pair(base, "lab-b", at(12, 30, 20), at(12, 30, 20) + 5 * MS, preds=[0], version="1", role="stable")
    assert [r.label for r in log.rows(ENDPOINT, request_id="lab-b")] == [None]
    clock.now = at(13, 35)  # an hour later: traffic of this minute is written before the labels come
    pair(base, "now", at(13, 35, 1), at(13, 35, 1) + 5 * MS, version="1", role="stable")
    body = [{"request_id": "lab-a", "label": 1}, {"request_id": "lab-b", "row": 0, "label": 1}]
    r = requests.post(base + "/v1/labels", json=body, timeout=10)
    assert r.status_code == 200 and r.json() == {"stored": 3, "unknown": []}
    got = sorted((r.request_id, r.row, r.label, r.labelled_at, r.at) for r in log.rows(ENDPOINT, limit=0)
                 if r.label is not None)
    assert got == [("lab-a", 0, 1, at(13, 35), at(12, 30, 10)), ("lab-a", 1, 1, at(13, 35), at(12, 30, 10)),
                   ("lab-b", 0, 1, at(13, 35), at(12, 30, 20))]
    assert counts(log, at(12, 0), at(14, 0)) == {
        (at(12, 30), "1", "stable"): (3, 15.0, 3, 1),  # lab-a row 0 right, row 1 and lab-b wrong
        (at(13, 35), "1", "stable"): (1, 5.0, 0, 0)}, "the labels count in the rows' minute, not the label's"
    assert hist(log, at(12, 0), LABEL) == {("1", "stable"): 3}
    assert hist(log, at(13, 0), LABEL) == {}
    again = requests.post(base + "/v1/labels", json=body, timeout=10).json()
    assert again == {"stored": 0, "unknown": []} and counts(log, at(12, 30), at(12, 31))[
        (at(12, 30), "1", "stable")] == (3, 15.0, 3, 1), "the same labels again change nothing"


def test_the_timeline_orders_changes_recorded_out_of_order_by_time(container, clock):
    c = container
    # a change at 12:50 is recorded first, the one at 12:40 (reported late, e.g. by a backend) after it
    c.history.record(ServedState(ENDPOINT, at(12, 50), "1", None, 0, actor="alice", note="aborted"))
    c.history.record(ServedState(ENDPOINT, at(12, 40), "1", "2", 50, actor="bob", note="to 50 %"))
    # two replicas: the second's clock lags, so the entry appended last carries the earlier time
    clock.now = at(12, 50)
    c.audit.append(actor="alice", action="abort_canary", target=ENDPOINT, result="ok", details={"model": MODEL})
    clock.now = at(12, 45)
    c.audit.append(actor="bob", action="set_canary_weight", target=ENDPOINT, result="ok",
                   details={"model": MODEL, "params": {"weight": 50}})
    events = c.incidents.timeline(ENDPOINT, at(12, 5), at(13, 0))
    assert [(e.kind, e.at, e.actor) for e in events] == [
        ("serving_change", at(12, 40), "bob"), ("action", at(12, 45), "bob"),
        ("serving_change", at(12, 50), "alice"), ("action", at(12, 50), "alice")]
    first, third = events[0], events[2]
    assert first.details["before"] == {"stable_version": "1", "canary_version": "2", "canary_weight": 20}
    assert first.title.startswith("canary v2 20 % → 50 % by bob")
    assert third.details["before"] == {"stable_version": "1", "canary_version": "2", "canary_weight": 50}
    assert third.title.startswith("canary v2 removed by alice")
    assert [e.details["seq"] for e in events if e.kind == "action"] == [2, 1], "time order, not append order"
    served = c.incidents.served_at(ENDPOINT, at(12, 45))
    assert (served["canary_version"], served["canary_weight"]) == ("2", 50)
    assert served["change_before"]["at"] == "2026-11-26T12:40:00.000000Z"
