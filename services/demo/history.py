"""``python -m services seed-history [--days 7] [--if-empty]``: a week of backdated demo traffic, so the
Monitoring page is full at first start — fed through the ingest's own code, not written around it.

For each demo endpoint: requests arrive about once a minute (more by day than by night), from the demo
datasets' held-out rows (:func:`services.traffic.demo_rows`), routed by the traffic split in force at that
time, answered with real predictions (each version loaded once with MLflow pyfunc, as the gateway loads
it, and predicting in batches), and shaped as KServe's logger sends them (V1 bodies, the gateway's
``ce-modelversion`` / ``ce-role`` / ``ce-model``, backdated ``ce-time``s). Each event goes through the
ingest's CloudEvent parsing (:meth:`Ingest.half_from_http`), its pairing store and its attribution and
row mapping, and the pairs are written in batches (:meth:`Ingest.write_pairs`). Ground truth then comes
for most answered rows — most within hours, some days late, some never — with backdated ``labelled_at``.

The story (for 7 days; a shorter span keeps the proportions): on ``cancer-screening`` stable v2 all week;
on day 3 a bad canary (the newest version that is neither stable nor the current canary: v5) at 20 % for
3 hours, failing often and slowly, then aborted; the current canary (v4) at 20 % from day 6 on; and
``mean texture`` drifting by +1.5 reference standard deviations from day 6. ``diabetes-risk``: stable only.
The serving history gets the same changes with their backdated times, so "what served at T" agrees.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from services.cli_output import emit
from services.errors import Invalid, PreconditionFailed

SOURCE = "demo history"
NOTE = "demo history"
GATEWAY = "http://localhost:8080/"
MEAN_INTERVAL_S = 75.0  # per endpoint, averaged over a day
PAIRS_PER_WRITE = 1000
PREDICT_CHUNK = 5000
BAD_CANARY_HOURS = 3
LABELS = {"soon": 0.78, "late": 0.10}  # the rest never come


@dataclass(frozen=True)
class Behaviour:
    median_ms: float
    spread: float  # sigma of the log-normal latency
    error_rate: float


@dataclass(frozen=True)
class Window:
    """A canary at ``weight`` % from ``start`` to ``end``."""

    version: str
    weight: int
    start: datetime
    end: datetime
    behaviour: Behaviour
    actor: str
    end_note: str = ""


@dataclass
class Story:
    endpoint: str
    model: str
    stable: str
    start: datetime
    end: datetime
    behaviour: Behaviour
    canaries: list[Window] = field(default_factory=list)
    drift: tuple[str, float, datetime] | None = None  # feature, reference SDs, from

    def route(self, t: datetime, draw: float) -> tuple[str, str, Behaviour]:
        for w in self.canaries:
            if w.start <= t < w.end and draw * 100 < w.weight:
                return w.version, "canary", w.behaviour
        return self.stable, "stable", self.behaviour


# endpoint -> stable behaviour, current canary's, bad canary's (None: no bad canary), drift
SCRIPT = {
    "cancer-screening": (Behaviour(6.0, 0.45, 0.002), Behaviour(9.0, 0.45, 0.003), Behaviour(40.0, 0.7, 0.15),
                         ("mean texture", 1.5)),
    "diabetes-risk": (Behaviour(4.0, 0.4, 0.001), Behaviour(5.0, 0.4, 0.002), None, None),
}


def _at_hour(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def story(endpoint, versions: list[str], now: datetime, days: float) -> Story:
    """The schedule of one endpoint (``endpoint``: its current state on the serving backend)."""
    stable_b, canary_b, bad_b, drift = SCRIPT[endpoint.name]
    start, span = now - timedelta(days=days), timedelta(days=days)
    s = Story(endpoint.name, endpoint.model, str(endpoint.stable_version), start, now, stable_b)
    late = _at_hour(start + span * 5 / 7)  # day 6 of 7
    others = [v for v in versions if v not in (str(endpoint.stable_version), str(endpoint.canary_version or ""))]
    if bad_b is not None and others:
        bad = max(others, key=int)
        t = (start + span * 2 / 7).replace(hour=10, minute=0, second=0, microsecond=0)  # day 3, office hours
        t = t if t > start else t + timedelta(days=1)
        s.canaries.append(Window(bad, 20, t, t + timedelta(hours=BAD_CANARY_HOURS), bad_b, "alice",
                                 f"{NOTE}: canary v{bad} aborted (error rate and latency up)"))
    if endpoint.canary_version and endpoint.canary_weight:
        s.canaries.append(Window(str(endpoint.canary_version), int(endpoint.canary_weight), late, now + span,
                                 canary_b, "alice"))
    if drift is not None:
        s.drift = (drift[0], drift[1], late)
    return s


def history_entries(s: Story):
    """The serving history the story implies, oldest first."""
    from services.history.serving import ServedState

    out = [ServedState(s.endpoint, s.start, s.stable, actor="seed", note=f"{NOTE}: serving", source="seed")]
    for w in s.canaries:
        out.append(ServedState(s.endpoint, w.start, s.stable, w.version, w.weight, actor=w.actor,
                               note=f"{NOTE}: canary v{w.version} at {w.weight}%", source="seed"))
        if w.end < s.end:
            out.append(ServedState(s.endpoint, w.end, s.stable, actor=w.actor, note=w.end_note, source="seed"))
    return out


@dataclass
class Request:
    id: str
    at: datetime
    version: str
    role: str
    rows: list[int]  # indices in the demo rows
    instances: list[dict]
    latency_ms: float
    status: int
    predictions: list | None = None


def requests_of(s: Story, rows: list[dict], sds: dict[str, float], rng: random.Random) -> list[Request]:
    """Arrivals over the story's span (a day/night cycle), routed, with latency and failures drawn."""
    from services.traffic import shifted

    out: list[Request] = []
    t = s.start + timedelta(seconds=rng.uniform(0, MEAN_INTERVAL_S))
    while t < s.end:
        hour = t.hour + t.minute / 60
        idx = [rng.randrange(len(rows)) for _ in range(1 if rng.random() < 0.85 else rng.randint(2, 4))]
        instances = [rows[i] for i in idx]
        if s.drift and t >= s.drift[2]:
            instances = [shifted(r, {s.drift[0]: s.drift[1]}, sds) for r in instances]
        version, role, b = s.route(t, rng.random())
        latency = rng.lognormvariate(math.log(b.median_ms), b.spread) * (1 + 0.15 * (len(idx) - 1))
        status = 503 if rng.random() < b.error_rate else 200
        rid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{NOTE}/{s.endpoint}/{s.start.isoformat()}/{len(out)}"))
        out.append(Request(rid, t, version, role, idx, instances, latency, status))
        busy = 1 + 0.5 * math.sin((hour - 9) / 24 * 2 * math.pi)  # busiest mid-afternoon, quiet at night
        t += timedelta(seconds=rng.expovariate(busy / MEAN_INTERVAL_S))
    return out


def predict(c, model: str, requests: list[Request]) -> None:
    """Real answers: each version loaded once (the gateway's model cache), predicting in batches."""
    from services.gateway.models import ModelCache
    from services.gateway.protocols import parse_v1

    cache = ModelCache(c.registry, tracking_uri=c.settings.mlflow_tracking_uri)
    try:
        by_version: dict[str, list[Request]] = {}
        for r in requests:
            if r.status == 200:
                by_version.setdefault(r.version, []).append(r)
        for version, reqs in by_version.items():
            loaded = _run(cache.get(model, version))
            flat = [(r, inst) for r in reqs for inst in r.instances]
            answers: list = []
            for i in range(0, len(flat), PREDICT_CHUNK):
                chunk = [inst for _, inst in flat[i:i + PREDICT_CHUNK]]
                answers += loaded.predict(parse_v1({"instances": chunk}, loaded.columns, max_batch=len(chunk)))
            k = 0
            for r in reqs:
                r.predictions, k = answers[k:k + len(r.instances)], k + len(r.instances)
    finally:
        cache.close()


def events(s: Story, r: Request):
    """The request's two CloudEvents, as the gateway's payload logger builds them (binary mode)."""
    from services.gateway.logger import inference_event

    common = {"request_id": r.id, "source": GATEWAY, "endpoint": s.endpoint, "role": r.role, "version": r.version,
              "model": s.model}
    body = ({"predictions": r.predictions} if r.status == 200 else
            {"error": f"{s.model!r} v{r.version} failed: upstream timeout"})
    yield inference_event("request", at=r.at, body=json.dumps({"instances": r.instances}).encode(), **common)
    yield inference_event("response", at=r.at + timedelta(milliseconds=r.latency_ms), status=r.status,
                          body=json.dumps(body).encode(), **common)


def ingest_all(ingest, s: Story, requests: list[Request]) -> int:
    """Every event through the ingest's parsing and pairing; pairs written ``PAIRS_PER_WRITE`` at a time."""
    stored, pairs = 0, []
    for r in requests:
        for msg in events(s, r):
            pair = ingest.pending.offer(ingest.half_from_http(dict(msg.headers), msg.body))
            if pair is not None:
                pairs.append(pair)
        if len(pairs) >= PAIRS_PER_WRITE:
            stored += ingest.write_pairs(pairs)[0]
            pairs = []
    if pairs:
        stored += ingest.write_pairs(pairs)[0]
    return stored


def deliver_labels(log, requests: list[Request], labels: list, now: datetime, rng: random.Random) -> int:
    """Ground truth for most answered rows: most within hours, some days late, some never; each hour's
    deliveries in one call, ``labelled_at`` that hour (the log's clock, set for the call)."""
    due: dict[datetime, list] = {}
    for r in requests:
        if r.status != 200:
            continue
        draw = rng.random()
        if draw < LABELS["soon"]:
            when = r.at + timedelta(minutes=rng.uniform(10, 240))
        elif draw < LABELS["soon"] + LABELS["late"]:
            when = r.at + timedelta(days=rng.uniform(1, 3))
        else:
            continue
        if when < now:
            due.setdefault(_at_hour(when) + timedelta(hours=1), []).extend(
                (r.id, n, labels[i]) for n, i in enumerate(r.rows))
    had = getattr(log, "clock", None)
    stored = 0
    try:
        for when in sorted(due):
            if had is not None:
                log.clock = lambda when=when: min(when, now)
            stored += log.add_labels(due[when]).stored
    finally:
        if had is not None:
            log.clock = had
    return stored


def has_rows(c, endpoints: list[str]) -> bool:
    return any(c.predictions.rows(ep, limit=1) for ep in endpoints)


def seed_history(c, *, days: float = 7, now: datetime | None = None, seed: int = 8, if_empty: bool = False,
                 progress: Callable[[str], None] | None = None) -> dict:
    """Backdated traffic, labels and serving history for each demo endpoint that exists. Returns a summary."""
    from services.ingest.app import Attribution, Ingest
    from services.traffic import DEMO_CLIENTS, demo_rows

    say = progress or (lambda _m: None)
    if not 0 < days <= 31:
        raise Invalid(f"--days must be in (0, 31], got {days:g}", source=SOURCE)
    if not c.serving.creates_endpoints:
        raise PreconditionFailed("the demo history is for the embedded demo (the local serving backend)",
                                 source=SOURCE)
    t0 = time.perf_counter()
    now = (now or c.clock()).astimezone(UTC)
    names = {ep.name for ep in c.serving.list_endpoints()}
    endpoints = [n for n in DEMO_CLIENTS if n in names]
    if not endpoints:
        raise PreconditionFailed("no demo endpoint: run `python -m services seed-demo` first", source=SOURCE)
    if if_empty and has_rows(c, endpoints):
        say("the prediction log already has rows for the demo endpoints: demo history skipped")
        return {"skipped": True, "endpoints": {}, "seconds": round(time.perf_counter() - t0, 2)}
    ingest = Ingest(c.predictions, Attribution(c.history), backend=c.settings.serving_backend, clock=c.clock)
    summary: dict = {"skipped": False, "from": now - timedelta(days=days), "to": now, "endpoints": {}}
    stories = []
    for name in endpoints:
        ep = c.serving.get_endpoint(name)
        versions = [str(v.version) for v in c.registry.list_versions(ep.model, with_metrics=False)]
        s = story(ep, versions, now, days)
        stories.append(s)
        rows, labels, sds = demo_rows(name)
        rng = random.Random(f"{seed}/{name}")
        reqs = requests_of(s, rows, sds, rng)
        predict(c, s.model, reqs)
        stored = ingest_all(ingest, s, reqs)
        labelled = deliver_labels(c.predictions, reqs, labels, now, rng)
        recorded = record_history(c.history, s)
        summary["endpoints"][name] = {"requests": len(reqs), "rows": stored, "labels": labelled,
                                      "history_changes": recorded,
                                      "canaries": [{"version": w.version, "weight": w.weight, "from": w.start,
                                                    "to": min(w.end, now)} for w in s.canaries],
                                      "drift": None if not s.drift else {"feature": s.drift[0], "sds": s.drift[1],
                                                                         "from": s.drift[2]}}
        say(f"{name}: {len(reqs):,} requests, {stored:,} rows, {labelled:,} labels over {days:g} days"
            + "".join(f"; canary v{w.version} {w.start:%a %H:%M}" for w in s.canaries))
    from services.demo.alerts import replay_alerts

    summary["alerts"] = replay_alerts(c, stories, now)
    say(f"alerts replayed over the story: {summary['alerts']['fired']} fired, {summary['alerts']['resolved']} "
        "resolved")
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    say(f"demo history seeded in {summary['seconds']:.1f} s")
    return summary


def record_history(history, s: Story) -> int:
    """The story's serving changes, unless this span already has demo-history changes (a re-run)."""
    if any(e.note.startswith(NOTE) for e in history.changes(s.endpoint, s.start, s.end)):
        return 0
    entries = history_entries(s)
    for e in entries:
        history.record(e)
    return len(entries)


def cmd_seed_history(c, args) -> int:
    from services.clock import utcnow
    from services.metrics import parse_time

    now = parse_time(args.now, now=utcnow(), what="--now")
    summary = seed_history(c, days=args.days, now=now, seed=args.seed, if_empty=args.if_empty,
                           progress=None if args.json else print)
    if args.json:
        emit(args, summary, "")
    return 0


def add_command(sub, common) -> None:
    """Registered by :mod:`services.cli`."""
    sp = sub.add_parser("seed-history", help="backdated demo traffic, labels and serving history (Monitoring)",
                        parents=[common])
    sp.add_argument("--days", type=float, default=7.0)
    sp.add_argument("--if-empty", action="store_true", help="only when the demo endpoints have no logged rows")
    sp.add_argument("--now", default=None, metavar="ISO", help="end of the history (default: now)")
    sp.add_argument("--seed", type=int, default=8, help="random seed")
    sp.set_defaults(fn=cmd_seed_history)


def _run(coro):
    """Run a coroutine to its end from synchronous code, also when this thread already runs an event loop
    (e.g. Playwright's sync API in the same test process): then in a worker thread of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()
