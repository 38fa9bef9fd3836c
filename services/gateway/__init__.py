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
        )
        values.update(overrides)
        return cls(**values)
