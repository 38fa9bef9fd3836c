"""The gateway's Prometheus metrics, in a registry of their own (never the process-global one)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LABELS = ("endpoint", "model", "version", "role")
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class GatewayMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("mlops_gateway_requests", "Prediction requests answered", LABELS,
                                registry=self.registry)
        self.errors = Counter("mlops_gateway_errors", "Prediction requests answered with a 5xx (model "
                              "failures, models that cannot load, injected faults)", LABELS, registry=self.registry)
        self.duration = Histogram("mlops_gateway_request_duration_seconds", "Time from arrival to answer",
                                  LABELS, buckets=BUCKETS, registry=self.registry)
        self.logger_dropped = Counter("mlops_gateway_logger_dropped", "Payload events dropped: the queue was full",
                                      registry=self.registry)
        self.logger_failed = Counter("mlops_gateway_logger_failed", "Payload events the ingest did not accept "
                                     "(error status, timeout, refused)", registry=self.registry)
        self.logger_sent = Counter("mlops_gateway_logger_sent", "Payload events delivered", registry=self.registry)
        self.replicas = Gauge("mlops_gateway_replicas", "Worker processes serving the version (replicas)",
                              ("endpoint", "version"), registry=self.registry)
        self.in_flight = Gauge("mlops_gateway_in_flight", "Requests in flight (waiting or predicting) for the "
                               "version's workers", ("endpoint", "version"), registry=self.registry)

    def observe(self, labels: tuple[str, str, str, str], status: int, seconds: float) -> None:
        self.requests.labels(*labels).inc()
        if status >= 500:
            self.errors.labels(*labels).inc()
        self.duration.labels(*labels).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
