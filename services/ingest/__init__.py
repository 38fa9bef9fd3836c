"""The prediction ingest: KServe's inference logger (``spec.predictor.logger``, ``mode: all``) and the console's
gateway POST request/response CloudEvents here; paired by ``ce-id``, split into one row per instance and
attributed to the version that answered, they are written to the prediction log
(:mod:`services.predictions`).

* :mod:`services.ingest.events` — pure: headers and payloads (V1, V2) → halves → rows;
* :mod:`services.ingest.pairing` — the bounded, TTL'd store of halves waiting for their other half;
* :mod:`services.ingest.app` — the Starlette app (``POST /``, ``POST /v1/labels``, ``GET /healthz``);
* :mod:`services.ingest.commands` — ``python -m services ingest | predictions | labels``.
"""
