"""Traffic for the demo and for tests: real HTTP requests to the serving gateway from the held-out rows of
the demo's datasets, with injected trouble — a shift in a feature (in reference standard deviations), a
share of one version's answers failing, extra latency for one version — from a given second on, and the
ground truth delivered late to the ingest.

``python -m services traffic --endpoint E --rps N --duration S [--from SECONDS] [--shift FEATURE=SDS]
[--errors VERSION=RATE] [--latency VERSION=MS] [--labels-delay SECONDS]``.

The request loop is bounded in count and time and stops by itself; it talks only to the gateway and
ingest URLs it is given (127.0.0.1 by default).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from services.errors import Invalid, Unavailable

SOURCE = "traffic"
TIMEOUT_S = 5.0
# The demo's endpoints and what their clients send: cancer screening's feature pipeline also computes the
# engineered ratio the gradient-boosting challenger needs (v2 ignores the extra column).
DEMO_CLIENTS = {"cancer-screening": ("breast-cancer-classifier", "all+ratio"),
                "diabetes-risk": ("diabetes-regressor", "all")}


@dataclass
class Plan:
    """What to send: rows (feature dicts) with their true labels, and the trouble to inject."""

    endpoint: str
    rps: float
    duration_s: float
    start_trouble_s: float = 0.0
    shift_sds: dict[str, float] = field(default_factory=dict)
    errors: dict[str, float] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)
    labels_delay_s: float | None = None

    def validate(self) -> None:
        if not 0 < self.rps <= 1000:
            raise Invalid(f"--rps must be in (0, 1000], got {self.rps:g}", source=SOURCE)
        if not 0 < self.duration_s <= 24 * 3600:
            raise Invalid(f"--duration must be in (0, 86400] seconds, got {self.duration_s:g}", source=SOURCE)
        if self.start_trouble_s < 0:
            raise Invalid("--from must not be negative", source=SOURCE)
        for v, rate in self.errors.items():
            if not 0 <= rate <= 1:
                raise Invalid(f"--errors {v}={rate:g}: a rate is between 0 and 1", source=SOURCE)
        for v, ms in self.latency_ms.items():
            if not 0 <= ms <= 60_000:
                raise Invalid(f"--latency {v}={ms:g}: milliseconds between 0 and 60000", source=SOURCE)
        if self.labels_delay_s is not None and self.labels_delay_s < 0:
            raise Invalid("--labels-delay must not be negative", source=SOURCE)


def parse_pairs(items: list[str] | None, what: str, *, numeric_key: bool = False) -> dict[str, float]:
    """``["a=1.5", "b=2"]`` → ``{"a": 1.5, "b": 2.0}``, with a clear error naming the option."""
    out: dict[str, float] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        try:
            number = float(value)
        except ValueError:
            number = None
        if not sep or not key or number is None or number != number:  # NaN
            raise Invalid(f"{what} takes NAME=NUMBER, got {item!r}", source=SOURCE)
        if numeric_key and not key.isdigit():
            raise Invalid(f"{what} takes VERSION=NUMBER with a version number, got {item!r}", source=SOURCE)
        out[key] = number
    return out


def demo_rows(endpoint: str) -> tuple[list[dict], list, dict[str, float]]:
    """The held-out rows of the demo dataset behind ``endpoint``: feature dicts, true labels, and each
    feature's reference (training) standard deviation."""
    from services.demo.datasets import features, load_data
    from services.demo.specs import CLASSIFIER, REGRESSOR

    if endpoint not in DEMO_CLIENTS:
        raise Invalid(f"no demo traffic for endpoint {endpoint!r}; demo endpoints: {', '.join(DEMO_CLIENTS)}",
                      source=SOURCE)
    model, feature_set = DEMO_CLIENTS[endpoint]
    spec = CLASSIFIER if model == CLASSIFIER.name else REGRESSOR
    data = load_data(spec)
    x_eval, x_train = features(data.x_eval, feature_set), features(data.x_train, feature_set)
    rows = [{k: float(v) for k, v in r.items()} for r in x_eval.to_dict(orient="records")]
    labels = [y.item() if hasattr(y, "item") else y for y in data.y_eval]
    return rows, labels, {c: float(x_train[c].std()) for c in x_train.columns}


def shifted(row: dict, shift_sds: dict[str, float], sds: dict[str, float]) -> dict:
    """Pure: the row with each named feature moved by that many reference standard deviations."""
    out = dict(row)
    for feature, k in shift_sds.items():
        if feature not in out:
            raise Invalid(f"--shift: no feature {feature!r} in this endpoint's rows", source=SOURCE)
        out[feature] = out[feature] + k * sds.get(feature, 0.0)
    return out


def _post(url: str, body, headers: dict | None = None) -> tuple[int, dict, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers or {}), {}


def run(plan: Plan, gateway_url: str, ingest_url: str | None = None, *, data=None,
        progress: Callable[[str], None] | None = None, clock: Callable[[], float] = time.monotonic) -> dict:
    """Send ``rps`` requests per second for ``duration_s`` seconds; returns counts per version and status.
    ``data`` is ``(rows, labels, reference_sds)``, by default the demo's held-out rows of the endpoint."""
    plan.validate()
    rows, labels, sds = data or demo_rows(plan.endpoint)
    say = progress or (lambda _m: None)
    gateway = gateway_url.rstrip("/")
    total = int(plan.rps * plan.duration_s)
    pending_labels: list[tuple[float, str, object]] = []
    by_version: dict[str, int] = {}
    statuses: dict[int, int] = {}
    trouble_on = False
    t0 = clock()
    for i in range(total):
        due = t0 + i / plan.rps
        while (now := clock()) < due:
            time.sleep(min(due - now, 0.05))  # pacing to the requested rate, not waiting for an outcome
        if not trouble_on and now - t0 >= plan.start_trouble_s and (plan.errors or plan.latency_ms):
            faults = [f"{v}=errors:{r}" for v, r in plan.errors.items()] + [
                f"{v}=latency:{ms}" for v, ms in plan.latency_ms.items()]
            status, _, answer = _post(f"{gateway}/admin/faults", {"spec": ",".join(faults)})
            if status != 200:
                raise Unavailable(f"the gateway refused the faults ({status}): {answer.get('error', '')}",
                                  source=SOURCE)
            trouble_on = True
            say(f"trouble from now on: {', '.join(faults)}")
        k = i % len(rows)
        row = rows[k]
        if plan.shift_sds and now - t0 >= plan.start_trouble_s:
            row = shifted(row, plan.shift_sds, sds)
        rid = str(uuid.uuid4())
        status, headers, _ = _post(f"{gateway}/v1/models/{plan.endpoint}:predict", {"instances": [row]},
                                   {"x-request-id": rid})
        statuses[status] = statuses.get(status, 0) + 1
        version = headers.get("x-model-version") or headers.get("X-Model-Version") or "?"
        by_version[version] = by_version.get(version, 0) + 1
        if ingest_url and plan.labels_delay_s is not None:
            pending_labels.append((clock() + plan.labels_delay_s, rid, labels[k]))
            _send_due_labels(pending_labels, ingest_url, clock())
    if ingest_url and pending_labels:
        last = max(t for t, _, _ in pending_labels)
        while (now := clock()) < last:
            time.sleep(min(last - now, 0.2))
        _send_due_labels(pending_labels, ingest_url, clock())
    return {"requests": total, "by_version": by_version, "statuses": {str(k): v for k, v in statuses.items()},
            "seconds": round(clock() - t0, 2)}


def _send_due_labels(pending: list, ingest_url: str, now: float) -> None:
    due = [p for p in pending if p[0] <= now]
    if not due:
        return
    _post(f"{ingest_url.rstrip('/')}/v1/labels", [{"request_id": rid, "label": label} for _, rid, label in due])
    pending[:] = [p for p in pending if p[0] > now]


def run_in_background(plan: Plan, gateway_url: str, ingest_url: str | None = None) -> threading.Thread:
    """For ``up``: a gentle stream beside the servers (a daemon thread; it ends with the process)."""
    t = threading.Thread(target=run, args=(plan, gateway_url, ingest_url), daemon=True, name="demo-traffic")
    t.start()
    return t
