"""The gateway's Starlette application: KServe V1 and V2 routes over every endpoint of the serving port.

Per prediction: look the endpoint up in the routing snapshot (404), draw stable or canary by its current
weight, get the version's warm model (loaded once, in a worker thread), parse and validate the body
against the version's signature (400 / 413), apply injected faults, predict (in a worker thread), answer
with ``x-model-version``, ``x-model-role`` and ``x-request-id``, count it, and hand the request and the
response to the payload logger (never waiting for it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
import uuid
from datetime import UTC, datetime

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route as HttpRoute

from services.errors import Invalid
from services.gateway import GatewayConfig
from services.gateway.logger import PayloadLogger, inference_event
from services.gateway.metrics import GatewayMetrics
from services.gateway.models import TRUSTED_SKOPS_TYPES, ModelCache, ModelLoadError
from services.gateway.protocols import ProtocolError, parse_v1, parse_v2, request_id_of, v1_response, v2_response
from services.gateway.routing import RoutingTable, faults_as_json, faults_from_json, parse_faults
from services.gateway.workers import ModelFailed, WorkerError

log = logging.getLogger("services.gateway")
LOOPBACK = {"127.0.0.1", "::1", "localhost", "testclient"}
INLINE_ROWS = 64  # batches up to this size are predicted on the event loop: a thread hop costs more


class Gateway:
    """The state behind the routes (tests reach it as ``app.state.gateway``)."""

    def __init__(self, registry, serving, config: GatewayConfig):
        self.config = config
        try:
            self.faults = parse_faults(config.faults)
        except ValueError as exc:
            raise Invalid(f"MLOPS_GATEWAY_FAULTS: {exc}", source="gateway") from exc
        self.metrics = GatewayMetrics()
        self.routing = RoutingTable(serving, ttl=config.refresh_seconds)
        self.models = ModelCache(registry, tracking_uri=config.tracking_uri,
                                 trusted=TRUSTED_SKOPS_TYPES | config.skops_trusted,
                                 allow_pickle=config.allow_pickle, size=config.model_cache)
        self.logger = PayloadLogger(config.ingest_url, maxsize=config.log_queue, timeout=config.log_timeout,
                                    workers=config.log_workers, on_drop=self.metrics.logger_dropped.inc,
                                    on_fail=self.metrics.logger_failed.inc, on_sent=self.metrics.logger_sent.inc)
        self.rng = random.Random()
        self._preload: asyncio.Task | None = None
        self.replicas = None
        if config.replicas == "process":
            from services.gateway.replicas import Replicas

            self.replicas = Replicas(config, serving, self.metrics)

    async def start(self) -> None:
        await self.logger.start()
        if self.config.preload:
            self._preload = asyncio.create_task(self._warm())
        if self.replicas is not None:
            self.replicas.start(self.routing, self.models)

    async def stop(self) -> None:
        if self._preload is not None:
            self._preload.cancel()
            with contextlib.suppress(BaseException):
                await self._preload
        if self.replicas is not None:
            await self.replicas.stop()
        await self.logger.stop()
        self.models.close()

    async def _warm(self) -> None:
        """Load every version an endpoint serves, so first requests do not pay for it."""
        try:
            routes = await self.routing.routes()
        except RuntimeError as exc:
            log.warning("no endpoints to warm up: %s", exc)
            return
        for route in routes.values():
            for version in route.versions():
                if route.model:
                    try:
                        await self.models.get(route.model, version)
                    except ModelLoadError as exc:
                        log.warning("cannot load %s v%s for %s: %s", route.model, version, route.endpoint, exc)

    # ------------------------------------------------------------------ predictions
    async def predict(self, request: Request, protocol: str) -> Response:
        t0 = time.perf_counter()
        arrival = datetime.now(UTC)
        rid = request.headers.get("x-request-id") or str(uuid.uuid4())
        name = request.path_params["endpoint"]
        headers = {"x-request-id": rid}
        try:
            route = await self.routing.get(name)
        except RuntimeError as exc:
            return _error(503, f"the endpoints cannot be read: {exc}", headers)
        if route is None:
            self.metrics.observe(("(unknown)", "", "", ""), 404, time.perf_counter() - t0)
            return _error(404, f"no endpoint named {name!r}", headers)
        version, role = route.choose(self.rng.random())
        headers.update({"x-model-version": str(version or ""), "x-model-role": role})
        labels = (name, route.model or "", str(version or ""), role)
        raw = await request.body()
        body = None
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            status, payload = 400, {"error": f"the body is not valid JSON: {exc}"}
        else:
            status, payload = await self._answer(route, version, body, protocol, rid)
        if self.logger.enabled and body is not None:
            self._log(rid, arrival, name, route.model, role, version, raw, status, payload)
        self.metrics.observe(labels, status, time.perf_counter() - t0)
        return JSONResponse(payload, status_code=status, headers=headers)

    async def _answer(self, route, version, body, protocol: str, rid: str) -> tuple[int, dict]:
        if not route.model or not version:
            return 503, {"error": f"endpoint {route.endpoint!r} serves no model version"}
        try:
            model = self.models.peek(route.model, version) or await self.models.get(route.model, version)
        except ModelLoadError as exc:
            return 503, {"error": f"{route.model!r} v{version} cannot be served: {exc}"}
        try:
            parse = parse_v1 if protocol == "v1" else parse_v2
            batch = parse(body, model.columns, max_batch=self.config.max_batch)
        except ProtocolError as exc:
            return exc.status, {"error": f"{exc.message} ({route.model!r} v{version})"}
        fault = self.faults.get(str(version))
        if fault is not None:
            if fault.latency_ms:
                await asyncio.sleep(fault.latency_ms / 1000)
            if fault.errors and self.rng.random() < fault.errors:
                return 503, {"error": f"injected fault: v{version} fails {fault.errors:.0%} of its answers"}
        try:
            if self.replicas is not None:
                predictions = await self.replicas.predict(route, version, model, batch)
            elif batch.rows <= INLINE_ROWS:
                predictions = model.predict(batch)
            else:
                predictions = await run_in_threadpool(model.predict, batch)
        except WorkerError as exc:
            log.warning("%r v%s: no worker answered: %s", route.model, version, exc)
            return 503, {"error": f"{route.model!r} v{version}: no worker answered: {exc}"}
        except ModelFailed as exc:
            log.warning("%r v%s failed: %s", route.model, version, exc)
            return 500, {"error": f"{route.model!r} v{version} failed: {str(exc)[:300]}"}
        except Exception as exc:  # noqa: BLE001 - the model failed on a valid request: a 500, counted
            log.warning("%r v%s failed: %s: %s", route.model, version, type(exc).__name__, exc)
            return 500, {"error": f"{route.model!r} v{version} failed: {type(exc).__name__}: {str(exc)[:300]}"}
        if protocol == "v1":
            return 200, v1_response(predictions)
        return 200, v2_response(route.endpoint, str(version), request_id_of(body, rid), predictions)

    def _log(self, rid, arrival, endpoint, model, role, version, raw: bytes, status: int, payload: dict) -> None:
        common = {"request_id": rid, "source": self.config.source, "endpoint": endpoint, "role": role,
                  "version": version, "model": model}
        try:
            self.logger.submit(inference_event("request", at=arrival, body=raw, **common))
            self.logger.submit(inference_event("response", at=datetime.now(UTC), status=status,
                                               body=json.dumps(payload).encode(), **common))
        except Exception as exc:  # noqa: BLE001 - logging never fails a prediction
            self.metrics.logger_dropped.inc()
            log.warning("cannot build the payload events: %s", exc)

    # ------------------------------------------------------------------ readiness
    async def model_ready(self, name: str) -> tuple[int, dict]:
        try:
            route = await self.routing.get(name)
        except RuntimeError as exc:
            return 503, {"error": f"the endpoints cannot be read: {exc}"}
        if route is None:
            return 404, {"error": f"no endpoint named {name!r}"}
        ready = bool(route.model and route.versions()
                     and all(self.models.loaded(route.model, v) for v in route.versions()))
        if not ready and route.model:
            for v in route.versions():
                with contextlib.suppress(ModelLoadError):
                    await self.models.get(route.model, v)
            ready = all(self.models.loaded(route.model, v) for v in route.versions())
        return (200 if ready else 503), {"name": name, "ready": ready, "versions": route.versions()}


def _error(status: int, message: str, headers: dict) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def build_app(registry, serving, config: GatewayConfig | None = None) -> Starlette:
    gw = Gateway(registry, serving, config or GatewayConfig())

    async def v1_predict(request: Request) -> Response:
        return await gw.predict(request, "v1")

    async def v2_infer(request: Request) -> Response:
        return await gw.predict(request, "v2")

    async def v1_model(request: Request) -> Response:
        status, body = await gw.model_ready(request.path_params["endpoint"])
        return JSONResponse(body, status_code=status)

    v2_model_ready = v1_model

    async def health_live(request: Request) -> Response:
        return JSONResponse({"live": True})

    async def health_ready(request: Request) -> Response:
        try:
            await gw.routing.routes()
        except RuntimeError as exc:
            return JSONResponse({"ready": False, "error": str(exc), "payload_log": gw.logger.status()},
                                status_code=503)
        return JSONResponse({"ready": True, "payload_log": gw.logger.status()})  # ready even when it fails

    async def metrics(request: Request) -> Response:
        return Response(gw.metrics.render(), media_type=gw.metrics.content_type)

    async def admin_faults(request: Request) -> Response:
        if request.client is None or request.client.host not in LOOPBACK:
            return JSONResponse({"error": "fault injection is only accepted from this machine"}, status_code=403)
        if request.method == "POST":
            try:
                gw.faults = faults_from_json(json.loads(await request.body() or b"{}"))
            except ValueError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(faults_as_json(gw.faults))

    async def admin_replicas(request: Request) -> Response:
        if request.client is None or request.client.host not in LOOPBACK:
            return JSONResponse({"error": "replica details are only given to this machine"}, status_code=403)
        return JSONResponse({"mode": gw.config.replicas,
                             "pools": gw.replicas.snapshot() if gw.replicas is not None else {}})

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await gw.start()
        try:
            yield
        finally:
            await gw.stop()

    app = Starlette(routes=[
        HttpRoute("/v1/models/{endpoint}:predict", v1_predict, methods=["POST"]),
        HttpRoute("/v1/models/{endpoint}", v1_model, methods=["GET"]),
        HttpRoute("/v2/models/{endpoint}/infer", v2_infer, methods=["POST"]),
        HttpRoute("/v2/models/{endpoint}/ready", v2_model_ready, methods=["GET"]),
        HttpRoute("/v2/health/live", health_live, methods=["GET"]),
        HttpRoute("/v2/health/ready", health_ready, methods=["GET"]),
        HttpRoute("/metrics", metrics, methods=["GET"]),
        HttpRoute("/admin/faults", admin_faults, methods=["GET", "POST"]),
        HttpRoute("/admin/replicas", admin_replicas, methods=["GET"]),
    ], lifespan=lifespan)
    app.state.gateway = gw
    return app
