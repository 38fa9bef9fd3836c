"""What served on an endpoint at a moment: the stable and canary versions and weights, the change that put
them there and the next one, and (given the prediction log) the requests each version answered around it."""

from __future__ import annotations

from datetime import datetime, timedelta

from services.clock import iso
from services.errors import ConsoleError, NotFound
from services.history.serving import ServedState, ServingHistory
from services.incidents.events import describe_change, utc
from services.serving import ServingBackend

AROUND = timedelta(minutes=5)
SAMPLES = 3  # request ids per version, the ones closest to the moment
ROWS_READ = 500  # logged rows read around the moment to pick them from
TICK = timedelta(microseconds=1)


def _change(before: ServedState | None, ch: ServedState | None) -> dict | None:
    if ch is None:
        return None
    return {"at": iso(utc(ch.at)), "actor": ch.actor, "approved_by": ch.approved_by,
            "what": describe_change(before, ch), "note": ch.note, "recorded_by": ch.source,
            "stable_version": ch.stable_version, "canary_version": ch.canary_version, "canary_weight": ch.canary_weight}


def served_at(history: ServingHistory, serving: ServingBackend | None, endpoint: str, at: datetime, *,
              predictions=None, around: timedelta = AROUND, samples: int = SAMPLES) -> dict:
    """The state of ``endpoint`` at ``at`` from its serving history (the last change at or before it).

    ``known`` is False before the first recorded change (the history cannot say what served then). With a
    prediction log, ``traffic`` is what each version answered in ``[at − around, at + around)`` (per-minute
    rollups, so whole minutes) and ``requests`` a few request ids per version for "explain this prediction"
    links. A prediction log that fails is named in ``warnings``; NotFound when neither the history nor the
    serving backend knows the endpoint.
    """
    at = utc(at)
    upto = history.changes(endpoint, None, at)
    later = history.changes(endpoint, at + TICK, None)
    model, warnings = None, []
    if serving is not None:
        try:
            model = serving.get_endpoint(endpoint).model
        except NotFound:
            if not upto and not later:
                raise
        except ConsoleError as exc:
            warnings.append(f"{exc.source}: {exc.message}")
    state = upto[-1] if upto else None
    stable, canary = (state.stable_version, state.canary_version) if state else (None, None)
    weight = state.canary_weight if state and canary else 0
    out = {
        "endpoint": endpoint, "model": model, "at": iso(at), "known": state is not None,
        "stable_version": stable, "canary_version": canary, "canary_weight": weight,
        "stable_weight": (100 - weight) if stable else 0,
        "since": iso(utc(state.at)) if state else None,
        "change_before": _change(upto[-2] if len(upto) > 1 else None, state),
        "change_after": _change(state, later[0]) if later else None,
        "note": "" if state else ("before the first recorded change: the serving history cannot say what served"
                                  if later else "the serving history has no change for this endpoint"),
        "traffic": [], "requests": [], "warnings": warnings,
        "window": {"from": iso(at - around), "to": iso(at + around)},
    }
    if predictions is not None:
        try:
            out["traffic"] = _traffic(predictions, endpoint, at - around, at + around)
            out["requests"] = _requests(predictions, endpoint, at, around, samples)
        except ConsoleError as exc:
            out["warnings"].append(f"{exc.source}: {exc.message}")
    return out


def _traffic(predictions, endpoint: str, start: datetime, end: datetime) -> list[dict]:
    rows = []
    for t in predictions.served(endpoint, start, end):
        rows.append({"version": t.version, "role": t.role, "requests": t.requests, "errors": t.errors,
                     "error_rate": t.errors / t.requests if t.requests else None})
    return sorted(rows, key=lambda r: ({"stable": 0, "canary": 1}.get(r["role"], 2), str(r["version"])))


def _requests(predictions, endpoint: str, at: datetime, around: timedelta, samples: int) -> list[dict]:
    """Up to ``samples`` distinct requests per version, the closest to ``at`` first."""
    rows = predictions.rows(endpoint, start=at - around, end=at + around, limit=ROWS_READ)
    rows = sorted(rows, key=lambda r: (abs((utc(r.at) - at).total_seconds()), r.request_id, r.row))
    seen: set[str] = set()
    per_version: dict[str | None, int] = {}
    out = []
    for r in rows:
        if r.request_id in seen or per_version.get(r.version, 0) >= samples:
            continue
        seen.add(r.request_id)
        per_version[r.version] = per_version.get(r.version, 0) + 1
        out.append({"request_id": r.request_id, "at": iso(utc(r.at)), "version": r.version, "role": r.role,
                    "status": r.status, "ok": r.ok and not r.error, "latency_ms": r.latency_ms,
                    "link": {"page": "explain", "endpoint": endpoint, "request_id": r.request_id}})
    return sorted(out, key=lambda d: (str(d["version"]), d["at"]))
