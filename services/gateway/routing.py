"""Which version answers: a snapshot of the serving port's endpoints, re-read at most once per ``ttl``
seconds, a fresh random draw per request, and the injected faults.

A weight change made in the console (an aborted canary, a new weight) is in effect within ``ttl`` (1 s)
without a restart. When a re-read fails the last snapshot keeps serving (and the read is retried after
``ttl``): a console database hiccup must not take the predictions down with it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

log = logging.getLogger("services.gateway")


@dataclass(frozen=True)
class Route:
    endpoint: str
    model: str | None
    stable_version: str | None
    canary_version: str | None = None
    canary_weight: int = 0
    min_replicas: int | None = None  # the endpoint's scaling (None: the gateway's default)
    max_replicas: int | None = None
    target: int | None = None

    def choose(self, draw: float) -> tuple[str | None, str]:
        """(version, role) for a draw in [0, 1): canary when ``draw * 100 < canary_weight``."""
        if self.canary_version and draw * 100 < self.canary_weight:
            return self.canary_version, "canary"
        return self.stable_version, "stable"

    def versions(self) -> list[str]:
        return [v for v in (self.stable_version, self.canary_version) if v]


class RoutingTable:
    def __init__(self, serving, *, ttl: float = 1.0, clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None):
        self.serving = serving
        self.ttl = ttl
        self.clock = clock
        self.rng = rng or random.Random()
        self._routes: dict[str, Route] | None = None
        self._at = float("-inf")
        self._lock = asyncio.Lock()
        self.last_error: str | None = None

    @property
    def ready(self) -> bool:
        return self._routes is not None

    async def routes(self) -> dict[str, Route]:
        if self.clock() - self._at >= self.ttl:
            await self.refresh()
        if self._routes is None:
            raise RuntimeError(f"cannot read the endpoints: {self.last_error}")
        return self._routes

    async def get(self, name: str) -> Route | None:
        return (await self.routes()).get(name)

    async def refresh(self, *, force: bool = False) -> None:
        async with self._lock:
            if not force and self.clock() - self._at < self.ttl:
                return  # another request refreshed it while this one waited
            try:
                eps = await run_in_threadpool(self.serving.list_endpoints)
            except Exception as exc:  # noqa: BLE001 - keep serving the last snapshot
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("cannot re-read the endpoints (serving the last snapshot): %s", self.last_error)
                self._at = self.clock()
                return
            self._routes = {e.name: Route(e.name, e.model, e.stable_version, e.canary_version,
                                          int(e.canary_weight or 0) if e.canary_version else 0,
                                          *_bounds(e.scaling)) for e in eps}
            self.last_error = None
            self._at = self.clock()

    def choose(self, route: Route) -> tuple[str | None, str]:
        return route.choose(self.rng.random())


def _bounds(scaling) -> tuple[int | None, int | None, int | None]:
    if scaling is None:
        return None, None, None
    target = scaling.target if scaling.metric in (None, "concurrency") else None  # workers scale on concurrency
    return scaling.min_replicas, scaling.max_replicas, target


# --------------------------------------------------------------------------- faults

@dataclass(frozen=True)
class Fault:
    errors: float = 0.0  # share of answers that fail with 503
    latency_ms: float = 0.0  # extra milliseconds before answering


def parse_faults(spec: str) -> dict[str, Fault]:
    """``"4=errors:0.3,4=latency:50"`` -> {"4": Fault(0.3, 50.0)}; ValueError with the bad part named."""
    out: dict[str, Fault] = {}
    for part in (spec or "").split(","):
        part = part.strip()
        if not part:
            continue
        version, sep, rest = part.partition("=")
        kind, sep2, value = rest.partition(":")
        if not sep or not sep2 or not version.strip():
            raise ValueError(f"fault {part!r} is not VERSION=errors:SHARE or VERSION=latency:MS")
        out[version.strip()] = _with(out.get(version.strip(), Fault()), kind.strip(), value.strip(), part)
    return out


def _with(fault: Fault, kind: str, value, part: str) -> Fault:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"fault {part!r}: {value!r} is not a number") from None
    if kind == "errors":
        if not 0.0 <= number <= 1.0:
            raise ValueError(f"fault {part!r}: the error share is between 0 and 1")
        return Fault(number, fault.latency_ms)
    if kind in ("latency", "latency_ms"):
        if not 0.0 <= number <= 60_000:
            raise ValueError(f"fault {part!r}: latency is between 0 and 60000 ms")
        return Fault(fault.errors, number)
    raise ValueError(f"fault {part!r}: the kind is errors or latency, not {kind!r}")


def faults_from_json(body) -> dict[str, Fault]:
    """``{"spec": "4=errors:0.3"}`` or ``{"faults": {"4": {"errors": 0.3, "latency_ms": 50}}}``; ``{}`` clears."""
    if not isinstance(body, dict):
        raise ValueError('send {"spec": "4=errors:0.3,4=latency:50"} or {"faults": {"4": {"errors": 0.3}}}')
    if "spec" in body:
        if not isinstance(body["spec"], str):
            raise ValueError("spec must be a string like 4=errors:0.3,4=latency:50")
        return parse_faults(body["spec"])
    faults = body.get("faults", {})
    if not isinstance(faults, dict):
        raise ValueError("faults must be an object: version -> {errors, latency_ms}")
    out: dict[str, Fault] = {}
    for version, spec in faults.items():
        if not isinstance(spec, dict):
            raise ValueError(f"faults[{version!r}] must be an object like {{'errors': 0.3, 'latency_ms': 50}}")
        fault = Fault()
        for kind, value in spec.items():
            fault = _with(fault, kind, value, f"{version}={kind}:{value}")
        out[str(version)] = fault
    return out


def faults_as_json(faults: dict[str, Fault]) -> dict:
    return {"faults": {v: {"errors": f.errors, "latency_ms": f.latency_ms} for v, f in sorted(faults.items())}}
