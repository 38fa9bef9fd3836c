"""A real serving path for the ``local`` serving backend: KServe's V1 and Open Inference (V2) protocols over
MLflow pyfunc models, canary routing by the endpoint's current weight, Prometheus metrics and KServe-style
payload logging. ``python -m services serve``; details in ``docs/gateway.md``.

Modules: ``app`` (Starlette routes), ``protocols`` (V1/V2 parsing and answers, pure), ``models`` (loading,
trusted types, frames), ``routing`` (endpoint snapshot, the draw, faults), ``logger`` (CloudEvents sender),
``metrics`` (Prometheus). No Streamlit here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from services.errors import Invalid


@dataclass(frozen=True)
class GatewayConfig:
    max_batch: int = 1000
    ingest_url: str | None = "http://127.0.0.1:8090/"
    log_queue: int = 10000
    log_timeout: float = 2.0
    log_workers: int = 4
    faults: str = ""
    refresh_seconds: float = 1.0
    model_cache: int = 16
    source: str = "http://localhost:8080/"
    tracking_uri: str | None = None
    skops_trusted: frozenset[str] = field(default_factory=frozenset)  # beyond models.TRUSTED_SKOPS_TYPES
    allow_pickle: bool = False
    preload: bool = True  # load every served version at start, in the background
    # Replicas (services.gateway.workers): "inline" predicts in this process (build_app's default: the fast tests);
    # "process" runs each served version in worker processes, scaled by requests in flight (serve and up).
    replicas: str = "inline"
    replicas_min: int = 1  # when the endpoint sets none
    replicas_max: int = min(4, os.cpu_count() or 1)  # more workers than cores only oversubscribe them
    replicas_target: int = 1  # concurrent requests per replica
    scale_down_seconds: float = 30.0  # a replica idle this long stops (down to the minimum)
    sample_seconds: float = 5.0  # how often the replica counts are recorded (the Capacity chart)
    worker_timeout: float = 30.0  # seconds per predict round trip with a worker
    worker_start_timeout: float = 120.0  # seconds for a worker to start and load its model
    worker_threads: int = 64

    @classmethod
    def from_env(cls, env: dict | None = None, **overrides) -> GatewayConfig:
        env = dict(os.environ if env is None else env)

        def number(name: str, default, kind=int, lo=0):
            raw = env.get(name, "")
            if raw.strip() == "":
                return default
            try:
                value = kind(raw.strip())
            except ValueError:
                raise Invalid(f"{name} must be a number, got {raw!r}", source="gateway") from None
            if value < lo:
                raise Invalid(f"{name} must be at least {lo}, got {value}", source="gateway")
            return value

        ingest = env.get("MLOPS_INGEST_URL", cls.ingest_url).strip()
        replicas = env.get("MLOPS_GATEWAY_REPLICAS", "process").strip().lower() or "process"
        if replicas not in ("process", "inline"):
            raise Invalid(f"MLOPS_GATEWAY_REPLICAS must be process or inline, got {replicas!r}", source="gateway")
        values = dict(
            max_batch=number("MLOPS_GATEWAY_MAX_BATCH", cls.max_batch, lo=1),
            ingest_url=None if ingest.lower() in ("", "off", "none") else ingest,
            log_queue=number("MLOPS_GATEWAY_LOG_QUEUE", cls.log_queue, lo=1),
            log_timeout=number("MLOPS_GATEWAY_LOG_TIMEOUT", cls.log_timeout, float, lo=0.01),
            faults=env.get("MLOPS_GATEWAY_FAULTS", ""),
            model_cache=number("MLOPS_GATEWAY_MODEL_CACHE", cls.model_cache, lo=1),
            skops_trusted=frozenset(t.strip() for t in env.get("MLOPS_GATEWAY_SKOPS_TRUSTED", "").split(",")
                                    if t.strip()),
            allow_pickle=env.get("MLOPS_GATEWAY_ALLOW_PICKLE", "").strip().lower() in ("1", "true", "yes"),
            replicas=replicas,
            replicas_min=number("MLOPS_GATEWAY_REPLICAS_MIN", cls.replicas_min, lo=1),
            replicas_max=number("MLOPS_GATEWAY_REPLICAS_MAX", cls.replicas_max, lo=1),
            replicas_target=number("MLOPS_GATEWAY_REPLICAS_TARGET", cls.replicas_target, lo=1),
            scale_down_seconds=number("MLOPS_GATEWAY_SCALE_DOWN_SECONDS", cls.scale_down_seconds, float, lo=0.1),
            sample_seconds=number("MLOPS_GATEWAY_SAMPLE_SECONDS", cls.sample_seconds, float, lo=0.1),
            worker_timeout=number("MLOPS_GATEWAY_WORKER_TIMEOUT", cls.worker_timeout, float, lo=0.1),
            worker_start_timeout=number("MLOPS_GATEWAY_WORKER_START_TIMEOUT", cls.worker_start_timeout, float,
                                        lo=1),
        )
        values.update(overrides)
        return cls(**values)
