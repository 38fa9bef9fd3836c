"""Replicas over time from a real Prometheus (issue 12): Debian's ``prometheus`` scrapes a real exporter
(prometheus-client) publishing what kube-state-metrics publishes for KServe's HorizontalPodAutoscaler; the
metrics source's default ``MLOPS_PROMQL_REPLICAS`` reads the counts back in time order, and an endpoint name with
quotes and backslashes cannot break out of its label matcher."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
import requests
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from services.metrics.prometheus import PrometheusMetricsSource
from services.settings import DEFAULT_PROMQL_REPLICAS, DEFAULT_PROMQL_REQUESTS
from tests.conftest import free_port, wait_for
from tests.integration.test_prometheus_source import _binary
from tests.processes import stop_process


@pytest.fixture
def prometheus_hpa(tmp_path):
    binary = _binary()
    registry = CollectorRegistry()
    gauge = Gauge("kube_horizontalpodautoscaler_status_current_replicas", "current replicas of the HPA",
                  ["namespace", "horizontalpodautoscaler"], registry=registry)
    exporter_port, prom_port = free_port(), free_port()
    server, thread = start_http_server(exporter_port, addr="127.0.0.1", registry=registry)
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s}\nscrape_configs:\n"
        f"  - job_name: ksm\n    static_configs: [{{targets: ['127.0.0.1:{exporter_port}']}}]\n")
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen([binary, f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
                            stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
    prom = f"http://127.0.0.1:{prom_port}"
    try:
        wait_for("Prometheus", lambda: requests.get(f"{prom}/-/ready", timeout=2).ok)
        yield gauge, prom
    finally:
        stop_process(proc, timeout=10)
        log.close()
        server.shutdown()
        thread.join(timeout=5)


def _source(prom: str) -> PrometheusMetricsSource:
    return PrometheusMetricsSource(prom, requests_query=DEFAULT_PROMQL_REQUESTS, errors_query="",
                                   buckets_query="", replicas_query=DEFAULT_PROMQL_REPLICAS)


def test_the_hpa_replicas_come_back_in_time_order(prometheus_hpa):
    gauge, prom = prometheus_hpa
    source = _source(prom)
    hpa = gauge.labels("ml", "screening-predictor")
    gauge.labels("ml", "other-predictor").set(9)  # another endpoint's autoscaler: never mixed in
    start = datetime.now(UTC) - timedelta(seconds=5)

    def seen(value: float):
        def check():
            now = datetime.now(UTC)
            series = source.replica_series("ml/screening", start, now, timedelta(seconds=1))
            return series if series and series[-1][2] == value else None
        return check

    hpa.set(2)
    wait_for("Prometheus to scrape 2 replicas", seen(2.0), timeout=60, every=0.5)
    hpa.set(4)
    series = wait_for("Prometheus to scrape 4 replicas", seen(4.0), timeout=60, every=0.5)
    values = [v for _, _, v in series]
    assert set(values) == {2.0, 4.0} and values.index(4.0) > values.index(2.0), values
    assert values[values.index(4.0):] == [4.0] * (len(values) - values.index(4.0))  # no going back
    assert [t for t, _, _ in series] == sorted(t for t, _, _ in series)
    assert {version for _, version, _ in series} == {None}  # the HPA is the endpoint's, not a version's


def test_a_hostile_endpoint_name_stays_inside_its_label_matcher(prometheus_hpa):
    gauge, prom = prometheus_hpa
    gauge.labels("ml", "screening-predictor").set(3)
    source = _source(prom)
    now = datetime.now(UTC)
    for name in ('ml/x"} or vector(1) or {a="', "ml/back\\\\slash", "ünï/côde 🚀"):
        assert source.replica_series(name, now - timedelta(minutes=1), now, timedelta(seconds=5)) == []
    no_template = PrometheusMetricsSource(prom, requests_query="", errors_query="", buckets_query="")
    assert no_template.replica_series("ml/screening", now - timedelta(minutes=1), now, timedelta(seconds=5)) == []


def test_the_capacity_chart_of_an_endpoint_without_replica_samples_reads_them_from_prometheus(prometheus_hpa):
    """KServe keeps no replica history; with Prometheus as the metrics source the Capacity chart shows the HPA's."""
    from dashboard.capacity_view import history_chart
    from services.capacity import history
    from tests.fakes import FakeServing

    gauge, prom = prometheus_hpa
    gauge.labels("ml", "screening-predictor").set(3)
    source = _source(prom)
    start = datetime.now(UTC) - timedelta(minutes=2)

    def read():
        h = history(FakeServing(), source, "ml/screening", start, datetime.now(UTC), timedelta(seconds=5))
        return h if h.replicas else None

    h = wait_for("the HPA's replicas in the capacity history", read, timeout=60, every=0.5)
    assert {(v, n) for _, v, n in h.replicas} == {("all", 3)}
    assert not any("no replica history" in n for n in h.notes), h.notes
    names = [t.name for t in history_chart(h, None).data]
    assert "all versions replicas" in names, names
