"""The ingest's ASGI app (Starlette): KServe inference-logger CloudEvents in, prediction rows out.

``POST /`` takes one CloudEvent (binary mode as KServe's logger and the console's gateway send it; structured
mode works too). A half whose other half has not come yet is kept in memory (:mod:`services.ingest.pairing`)
and answered 202; the half that completes a pair writes its rows (200 ``{"stored", "duplicates"}``). Pairs
completed by concurrent requests at about the same moment are written in one transaction (group commit,
:mod:`services.ingest.batching`), each answer still counting its own rows. A malformed event is answered
400 ``{"error": ...}`` and writes nothing; a database that is down, 503 (every pair of the failed transaction).
``POST /v1/labels`` stores ground truth, ``GET /healthz`` says the process is up and how many halves wait.

Attribution (who answered each row): ``ce-modelversion`` (the gateway sets it), else the V2 response's
``model_version``, else the endpoint's serving history at the request's time (its stable version). The role
is ``ce-role`` when sent; otherwise it follows from the history when the version is one the endpoint served
then (stable or canary), and is ``unknown`` when the version itself was only inferred while a canary ran.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from cloudevents.core.bindings.http import HTTPMessage, from_http
from cloudevents.core.formats.json import JSONFormat
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from services.clock import Clock, utcnow
from services.errors import ConsoleError, Invalid
from services.history.serving import ServingHistory
from services.ingest.batching import GroupCommit
from services.ingest.events import Half, bad, check_pair, pair_rows, parse_half
from services.ingest.pairing import PendingHalves
from services.predictions import PredictionLog, PredictionRow, WriteResult

log = logging.getLogger("services.ingest")
MAX_BODY = 20 * 1024 * 1024
_FORMAT = JSONFormat()


class Attribution:
    """Resolves the version, role, model and signature columns of a pair (blocking: runs in a thread).
    ``model_of(endpoint)`` and ``columns_of(model, version)`` may fail or return None: rows are still
    written, with what is known."""

    def __init__(self, history: ServingHistory | None, *, model_of: Callable[[str], str | None] | None = None,
                 columns_of: Callable[[str, str], list[str] | None] | None = None, cache_s: float = 60.0):
        self.history = history
        self.model_of = model_of
        self.columns_of = columns_of
        self.cache_s = cache_s
        self._models: dict[str, tuple[float, str | None]] = {}
        self._columns: dict[tuple[str, str], list[str] | None] = {}

    def model(self, endpoint: str) -> str | None:
        hit = self._models.get(endpoint)
        if hit and time.monotonic() - hit[0] < self.cache_s:
            return hit[1]
        try:
            value = self.model_of(endpoint) if self.model_of else None
        except Exception as exc:  # noqa: BLE001 - unknown is the honest answer when the source is down
            log.debug("model of %s unknown: %s", endpoint, exc)
            value = None
        self._models[endpoint] = (time.monotonic(), value)
        return value

    def columns(self, model: str | None, version: str | None) -> list[str] | None:
        if not model or not version or not self.columns_of:
            return None
        key = (model, version)
        if key not in self._columns:  # a version's signature never changes
            try:
                self._columns[key] = self.columns_of(model, version)
            except Exception as exc:  # noqa: BLE001 - positional features are then named f0..fk
                log.debug("signature of %s v%s unknown: %s", model, version, exc)
                return None
        return self._columns[key]

    def resolve(self, request: Half, response: Half, at: datetime) -> tuple[str | None, str, str | None]:
        version = request.version or response.version
        role = response.role or request.role
        if (version is None or role is None) and self.history is not None:
            state = self.history.served_at(request.endpoint, at)
            if state is not None:
                if version is None:
                    version = state.stable_version
                    role = role or ("stable" if not state.canary_version or not state.canary_weight else None)
                elif role is None and str(version) == str(state.canary_version or ""):
                    role = "canary"
                elif role is None and str(version) == str(state.stable_version or ""):
                    role = "stable"
        model = response.model or request.model or self.model(request.endpoint)
        return version, role or "unknown", model


class Ingest:
    def __init__(self, predictions: PredictionLog, attribution: Attribution, *, backend: str = "local",
                 pending: PendingHalves | None = None, clock: Clock = utcnow, group_window_s: float = 0.0,
                 group_max_pairs: int = 256):
        self.predictions = predictions
        self.attribution = attribution
        self.backend = backend
        self.pending = pending or PendingHalves()
        self.clock = clock
        self.stored = 0
        self.duplicates = 0
        self._keys_reported = False  # learnt from the log's first write: does WriteResult name inserted keys?
        self.group = GroupCommit(self.write_group, window_s=group_window_s, max_items=group_max_pairs)

    def half_from_http(self, headers: dict[str, str], body: bytes) -> Half:
        headers = {k.lower(): v for k, v in headers.items()}
        if not any(k.startswith("ce-") for k in headers) and "cloudevents" not in headers.get("content-type", ""):
            raise bad("not a CloudEvent: no ce-* headers (binary mode) and no application/cloudevents+json body")
        for required in ("ce-specversion", "ce-id", "ce-source", "ce-type"):
            if required not in headers and "cloudevents" not in headers.get("content-type", ""):
                raise bad(f"missing CloudEvent header {required}")
        try:
            event = from_http(HTTPMessage(headers=headers, body=body), _FORMAT)
        except Exception as exc:  # noqa: BLE001 - the SDK's validation errors vary; each is a bad event
            raise bad(f"not a valid CloudEvent: {' '.join(str(exc).split())[:300]}") from None
        data = event.get_data()
        if isinstance(data, bytes | str):
            try:
                data = json.loads(data)
            except ValueError:
                raise bad("the event body is not JSON") from None
        return parse_half(event.get_attributes(), data, backend=self.backend)

    def rows_of(self, request: Half, response: Half) -> list[PredictionRow]:
        """The rows of one pair, attributed (blocking: may read the serving history and the registry)."""
        check_pair(request, response)
        at = request.time or response.time or self.clock()
        version, role, model = self.attribution.resolve(request, response, at)
        columns = None
        if any(isinstance(i, list) for i in request.instances):
            columns = self.attribution.columns(model, version)
        return pair_rows(request, response, at=at, version=version, role=role, model=model, columns=columns)

    def write_pair(self, request: Half, response: Half) -> tuple[int, int]:
        return self.write_pairs([(request, response)])

    def write_pairs(self, pairs: Sequence[tuple[Half, Half]]) -> tuple[int, int]:
        """Several pairs in one write of the prediction log (one transaction); a bad pair fails them all."""
        return self._write_rows([r for request, response in pairs for r in self.rows_of(request, response)])

    def write_group(self, pairs: Sequence[tuple[Half, Half]]) -> list[tuple[int, int] | ConsoleError]:
        """Pairs of concurrent requests in one transaction; per pair ``(stored, duplicates)``, or the error of a
        pair that cannot be written (a bad pair is refused alone). A failing write raises: nothing was written.
        Each pair's counts come from the keys the write really inserted; a key two pairs share (the same event
        delivered twice at once) counts as stored for the first. A log that does not report the inserted keys
        (``WriteResult.inserted`` None) gets one transaction per pair, each answered on its own."""
        out: list[Any] = []
        for request, response in pairs:
            try:
                out.append(self.rows_of(request, response))
            except ConsoleError as exc:
                out.append(exc)
        good = [i for i, rows in enumerate(out) if not isinstance(rows, ConsoleError)]
        if len(good) > 1 and not self._keys_reported:
            for i in good:
                try:
                    out[i] = self._write_rows(out[i])
                except ConsoleError as exc:
                    out[i] = exc
            return out
        res = self.predictions.write([r for i in good for r in out[i]]) if good else None
        claimed: set[tuple[str, int]] = set()
        for i in good:
            if res.inserted is None:  # a single pair
                out[i] = (res.stored, res.duplicates)
                continue
            mine = {(str(r.request_id), int(r.row)) for r in out[i]} & res.inserted - claimed
            claimed |= mine
            out[i] = (len(mine), len(out[i]) - len(mine))
        if res is not None:
            self._counted(res)
        return out

    def _write_rows(self, rows: list[PredictionRow]) -> tuple[int, int]:
        res = self._counted(self.predictions.write(rows))
        return res.stored, res.duplicates

    def _counted(self, res: WriteResult) -> WriteResult:
        self.stored += res.stored
        self.duplicates += res.duplicates
        self._keys_reported = res.inserted is not None
        return res

    # -- routes --------------------------------------------------------------------------------------------
    async def event(self, request: Request) -> JSONResponse:
        body = await request.body()
        if len(body) > MAX_BODY:
            return _error(bad(f"event body of {len(body)} bytes is over the limit ({MAX_BODY})"), 413)
        try:
            half = self.half_from_http(dict(request.headers), body)
        except Invalid as exc:
            return _error(exc, 400)
        if self.pending.already_written(half.id):
            return JSONResponse({"id": half.id, "status": "duplicate", "stored": 0})
        pair = self.pending.offer(half)
        if pair is None:
            return JSONResponse({"id": half.id, "status": "pending", "waiting_for":
                                 "response" if half.kind == "request" else "request"}, status_code=202)
        try:
            stored, duplicates = await self.group.submit(pair)
        except Invalid as exc:
            return _error(exc, 400)
        except ConsoleError as exc:
            log.warning("writing request %s failed: %s", half.id, exc)
            return _error(exc, 503)
        self.pending.written(half.id)
        return JSONResponse({"id": half.id, "status": "stored", "stored": stored, "duplicates": duplicates})

    async def labels(self, request: Request) -> JSONResponse:
        try:
            items = parse_labels(await request.body())
            res = await run_in_threadpool(self.predictions.add_labels, items)
        except Invalid as exc:
            return _error(exc, 400)
        except ConsoleError as exc:
            return _error(exc, 503)
        return JSONResponse({"stored": res.stored, "unknown": res.unknown})

    async def healthz(self, _request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "stored": self.stored, "duplicates": self.duplicates,
                             **self.pending.stats()})

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/", self.event, methods=["POST"]),
                                 Route("/v1/labels", self.labels, methods=["POST"]),
                                 Route("/healthz", self.healthz, methods=["GET"])])


def parse_labels(body: bytes) -> list[tuple[str, int | None, Any]]:
    """``[{"request_id": ..., "row": optional int, "label": ...}]`` → ``(request_id, row, label)``."""
    try:
        items = json.loads(body)
    except ValueError:
        raise Invalid("the labels body is not JSON", source="prediction ingest") from None
    if not isinstance(items, list):
        raise Invalid('labels must be a JSON list of {"request_id", "row"?, "label"}', source="prediction ingest")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or item.get("request_id") in (None, "") or item.get("label") is None:
            raise Invalid(f"label #{i} needs a request_id and a non-null label: {str(item)[:200]}",
                          source="prediction ingest")
        row = item.get("row")
        if row is not None and (isinstance(row, bool) or not isinstance(row, int) or row < 0):
            raise Invalid(f"label #{i}: row must be a non-negative integer", source="prediction ingest")
        out.append((str(item["request_id"]), row, item["label"]))
    return out


def _error(exc: ConsoleError, status: int) -> JSONResponse:
    return JSONResponse({"error": exc.message, "source": exc.source, **({"detail": exc.detail} if exc.detail
                                                                         else {})}, status_code=status)


def create_app(container) -> Starlette:
    """The ingest over a composition container: its prediction log, serving history, registry (signature
    column names) and serving backend (an endpoint's model), ``MLOPS_SERVING_BACKEND`` naming endpoints."""

    def model_of(endpoint: str) -> str | None:
        return container.serving.get_endpoint(endpoint).model

    def columns_of(model: str, version: str) -> list[str] | None:
        sig = container.registry.get_version_detail(model, version).signature
        return [name for name, _ in sig.inputs] if sig and sig.inputs else None

    container.predictions  # noqa: B018 - open the database now: a wrong URL fails at start, not per event
    attribution = Attribution(container.history, model_of=model_of, columns_of=columns_of)
    return Ingest(container.predictions, attribution, backend=container.settings.serving_backend,
                  clock=container.clock).app()
