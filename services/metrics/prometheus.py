"""Live metrics from Prometheus: PromQL over its HTTP API (``/api/v1/query`` for a window,
``/api/v1/query_range`` for series), every call with a timeout.

The queries are templates from the settings (``MLOPS_PROMQL_REQUESTS``, ``MLOPS_PROMQL_ERRORS``,
``MLOPS_PROMQL_LATENCY_BUCKETS``) so the metric names of a real cluster (KServe / Knative's
``revision_app_request_count`` …) fit: ``$endpoint`` and ``$window`` are substituted; results carry the
version and role labels (names from the settings) and, for the buckets, ``le``. Quantiles are computed
here from the bucket counts (the same interpolation as the SQL source), not by ``histogram_quantile``.
The defaults use ``increase()``, which survives counter resets (pods come and go) and extrapolates to the
window's edges: counts are estimates, not exact integers.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from string import Template

import requests

from services.breaker import Breaker, is_timeout
from services.errors import Invalid, Unavailable
from services.metrics import MetricsSource
from services.metrics.stats import Aggregate

SOURCE = "prometheus"


def _num(text) -> float:
    try:
        v = float(text)
    except (TypeError, ValueError):
        return 0.0
    return 0.0 if math.isnan(v) else v


class PrometheusMetricsSource(MetricsSource):
    source = SOURCE

    def __init__(self, url: str, *, requests_query: str, errors_query: str, buckets_query: str,
                 latency_unit_ms: float = 1000.0, version_label: str = "version", role_label: str = "role",
                 timeout: float = 5.0, session: requests.Session | None = None, replicas_query: str | None = None,
                 **kw):
        super().__init__(**kw)
        self.url = url.rstrip("/")
        self.templates = {"requests": requests_query, "errors": errors_query, "buckets": buckets_query}
        self.replicas_query = replicas_query
        self.unit_ms = latency_unit_ms
        self.version_label, self.role_label = version_label, role_label
        self.timeout = timeout
        self.http = session or requests.Session()
        self.breaker = Breaker("Prometheus")  # one timeout per page, not one per query

    @classmethod
    def from_settings(cls, settings, **kw) -> PrometheusMetricsSource:
        return cls(settings.prometheus_url, requests_query=settings.promql_requests,
                   errors_query=settings.promql_errors, buckets_query=settings.promql_latency_buckets,
                   latency_unit_ms=settings.promql_latency_unit_ms, version_label=settings.promql_version_label,
                   role_label=settings.promql_role_label, timeout=settings.prometheus_timeout_seconds,
                   replicas_query=settings.promql_replicas, **kw)

    # -- HTTP ---------------------------------------------------------------------------------------------
    def query(self, promql: str, path: str = "query", **params) -> list[dict]:
        try:
            self.breaker.check()
        except Unavailable as exc:
            raise Unavailable(f"Prometheus at {self.url}: {exc.message}", source=SOURCE, detail=promql) from exc
        try:
            with self.breaker.guard():
                resp = self.http.get(f"{self.url}/api/v1/{path}", params={"query": promql, **params},
                                     timeout=self.timeout)
        except requests.RequestException as exc:
            if is_timeout(exc):
                raise Unavailable(f"Prometheus at {self.url} did not answer within {self.timeout:g} s",
                                  source=SOURCE, detail=str(exc)[:300]) from exc
            raise Unavailable(f"Prometheus at {self.url} is not reachable: {exc.__class__.__name__}",
                              source=SOURCE, detail=str(exc)[:300]) from exc
        try:
            body = resp.json()
        except ValueError:
            body = {}
        if resp.status_code == 400 or body.get("errorType") in ("bad_data",):
            raise Invalid(f"Prometheus refused the query: {body.get('error', resp.text[:200])}", source=SOURCE,
                          detail=promql)
        if resp.status_code >= 300 or body.get("status") != "success":
            raise Unavailable(f"Prometheus answered {resp.status_code}: {body.get('error', resp.text[:200])}",
                              source=SOURCE, detail=promql)
        return body["data"]["result"]

    def _promql(self, kind: str, endpoint: str, window: timedelta) -> str:
        seconds = max(1, int(round(window.total_seconds())))
        return Template(self.templates[kind]).safe_substitute(endpoint=endpoint.replace('"', '\\"'),
                                                              window=f"{seconds}s")

    def _key(self, metric: dict) -> tuple[str | None, str]:
        return metric.get(self.version_label) or None, metric.get(self.role_label) or "unknown"

    # -- the primitives -------------------------------------------------------------------------------------
    def aggregates(self, endpoint: str, start: datetime, end: datetime) -> list[Aggregate]:
        window = end - start
        results = {k: [(r["metric"], [r["value"]]) for r in self.query(self._promql(k, endpoint, window),
                                                                         time=end.timestamp())]
                   for k in self.templates}
        return [a for _, a in self._assemble(results, None)]

    def aggregate_series(self, endpoint: str, start: datetime, end: datetime, step: timedelta
                         ) -> list[tuple[datetime, Aggregate]]:
        secs = step.total_seconds()
        results = {k: [(r["metric"], r["values"]) for r in self.query(
            self._promql(k, endpoint, step), "query_range", start=(start + step).timestamp(), end=end.timestamp(),
            step=secs)] for k in self.templates}
        return self._assemble(results, step)

    def replica_series(self, endpoint: str, start: datetime, end: datetime, step: timedelta
                       ) -> list[tuple[datetime, str | None, float]]:
        """(time, version or None for the whole endpoint, replicas) from ``MLOPS_PROMQL_REPLICAS``; [] without it."""
        if not self.replicas_query:
            return []
        namespace, _, name = endpoint.rpartition("/")

        def esc(text: str) -> str:
            return text.replace("\\", "\\\\").replace('"', '\\"')

        promql = Template(self.replicas_query).safe_substitute(endpoint=esc(endpoint), namespace=esc(namespace),
                                                               name=esc(name))
        rows = self.query(promql, "query_range", start=start.timestamp(), end=end.timestamp(),
                          step=max(step.total_seconds(), 1.0))
        return sorted(((datetime.fromtimestamp(float(ts), UTC), r["metric"].get(self.version_label) or None,
                        _num(val)) for r in rows for ts, val in r["values"]), key=lambda t: (t[0], str(t[1])))

    def _assemble(self, results: dict, step: timedelta | None) -> list[tuple[datetime, Aggregate]]:
        """Per (evaluation time, version, role): counts, errors and the buckets made per-bucket."""
        cells: dict[tuple[float, str | None, str], dict] = {}
        for kind, series in results.items():
            for metric, values in series:
                version, role = self._key(metric)
                for ts, val in values:
                    cell = cells.setdefault((float(ts), version, role), {"requests": 0.0, "errors": 0.0, "le": {}})
                    if kind == "buckets":
                        le = float(metric.get("le", "+Inf"))
                        cell["le"][le] = cell["le"].get(le, 0.0) + _num(val)
                    else:
                        cell[kind] += _num(val)
        out = []
        for (ts, version, role), cell in sorted(cells.items(), key=lambda kv: (kv[0][0], kv[0][2], str(kv[0][1]))):
            les = sorted(cell["le"])
            cum = [cell["le"][le] for le in les]
            per = tuple(max(c - (cum[i - 1] if i else 0.0), 0.0) for i, c in enumerate(cum))
            bounds = tuple(le if math.isinf(le) else le * self.unit_ms for le in les)
            count = cell["requests"] or (cum[-1] if cum else 0.0)
            at = datetime.fromtimestamp(ts, UTC) - (step or timedelta(0))
            out.append((at, Aggregate(version, role, count=count, errors=cell["errors"],
                                      bounds_ms=bounds or (math.inf,), buckets=per or (0.0,))))
        return out
