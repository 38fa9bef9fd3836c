"""``python -m services worker``: what must run ONCE per installation, beside any number of consoles and ingests.

In a cluster the console runs as several replicas and the ingest as two; the periodic jobs that ``up`` runs
beside the demo's gateway must not run in each of them. The worker runs only those, in one process (one
replica, ``deploy/worker.yaml``):

* the alert evaluation, every ``MLOPS_ALERT_INTERVAL_SECONDS`` (:func:`services.alerts.runner.loop`);
* the retention purge of raw prediction rows past ``MLOPS_PREDICTION_RETENTION_DAYS``, hourly;
* the audit anchor, every ``MLOPS_AUDIT_ANCHOR_MINUTES`` to ``MLOPS_AUDIT_ANCHOR_FILE`` (a volume only it mounts);
* where the policy has a ``retraining:`` section, its rules every ``MLOPS_RETRAIN_CHECK_MINUTES``
  (:func:`services.retraining.commands.rules_loop`; at most one open retraining per endpoint).

Two workers at once would still be safe for alerts (one firing alert per endpoint and rule is a unique key) and
retention (a purge is idempotent), but would append interleaved anchors; hence one replica, replaced with the
``Recreate`` strategy. ``GET /healthz`` answers 200 while every loop is alive and 503 naming the dead ones (the
liveness probe then restarts the pod). SIGTERM stops the loops and exits 0.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RETENTION_EVERY_S = 3600.0


def _retention(container, stop: threading.Event, say: Callable[[str], None],
               every_s: float = RETENTION_EVERY_S) -> None:
    """Drop raw prediction rows older than MLOPS_PREDICTION_RETENTION_DAYS (rollups stay), now and hourly."""
    while not stop.is_set():
        try:
            cutoff = container.clock() - timedelta(days=container.settings.prediction_retention_days)
            dropped = container.predictions.purge(cutoff)
            if dropped:
                say(f"retention: dropped {dropped} raw prediction rows older than {cutoff:%Y-%m-%d %H:%M} UTC")
        except Exception as exc:  # noqa: BLE001 - retention retries next time; the other loops go on
            say(f"retention: purge failed ({exc}); will retry")
        stop.wait(every_s)


def anchor_loop(container, stop: threading.Event, say: Callable[[str], None]) -> None:
    """Anchor the audit head outside the database now and every MLOPS_AUDIT_ANCHOR_MINUTES."""
    from services.audit.anchor import FileAnchors, anchor_now
    from services.errors import ConsoleError

    anchors = FileAnchors(container.settings.anchor_file)
    while not stop.is_set():
        try:
            anchor_now(container.audit, anchors, container.clock())
        except ConsoleError as exc:
            say(f"audit anchor: {exc.source}: {exc.message}")
        stop.wait(container.settings.audit_anchor_minutes * 60)


def loops(container, stop: threading.Event, say: Callable[[str], None]) -> dict[str, threading.Thread]:
    """The worker's loops as (not yet started) daemon threads, by name."""
    from services.alerts.runner import loop as alert_loop

    every = container.settings.alert_interval_seconds
    targets = {"alerts": (alert_loop, (container, every, stop, say)),
               "retention": (_retention, (container, stop, say)),
               "audit-anchor": (anchor_loop, (container, stop, say))}
    from services.retraining.commands import has_rules, rules_loop

    if has_rules(container):
        targets["retraining"] = (rules_loop, (container, stop, say))
    return {name: threading.Thread(target=fn, args=args, daemon=True, name=name)
            for name, (fn, args) in targets.items()}


def _health_server(host: str, port: int, threads: dict[str, threading.Thread]) -> ThreadingHTTPServer:
    class Health(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server API
            if self.path.split("?")[0] != "/healthz":
                self._answer(404, {"error": "not found; GET /healthz"})
                return
            dead = sorted(n for n, t in threads.items() if not t.is_alive())
            self._answer(503 if dead else 200, {"ok": not dead, "loops": sorted(threads), "dead": dead})

        def _answer(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format, *args):  # noqa: A002 - probes every few seconds: no access log
            pass

    server = ThreadingHTTPServer((host, port), Health)
    server.daemon_threads = True
    return server


def say_needs_repair(container, say: Callable[[str], None]) -> int:
    """At start: what a stopped process left half-done (found, never repaired here: a person runs ``repair``)."""
    from services.errors import ConsoleError

    try:
        found = container.actions.needs_repair()
    except ConsoleError as exc:
        say(f"needs repair: could not be checked ({exc.source}: {exc.message})")
        return 0
    for f in found:
        say(f"NEEDS REPAIR {f.endpoint}: {f.summary} (python -m services repair --endpoint {f.endpoint} --dry-run)")
    return len(found)


def run(container, *, host: str, port: int, say: Callable[[str], None] = print,
        stop: threading.Event | None = None) -> int:
    stop = stop or threading.Event()
    say_needs_repair(container, say)
    threads = loops(container, stop, say)
    server = _health_server(host, port, threads)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True,
                     name="worker-health").start()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    for t in threads.values():
        t.start()
    say(f"worker: {', '.join(threads)} running; health on http://{host}:{port}/healthz")
    try:
        while not stop.wait(1.0):
            dead = [n for n, t in threads.items() if not t.is_alive()]
            if dead:
                say(f"worker: loop(s) {', '.join(dead)} stopped; exiting so the pod is restarted")
                return 1
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        stop.set()
        server.shutdown()
        server.server_close()


def cmd_worker(c, args) -> int:
    return run(c, host=args.host, port=args.port)


def add_command(sub, common) -> None:
    sp = sub.add_parser("worker", parents=[common],
                        help="the jobs that run once per installation: alert evaluation, retention, audit anchor")
    sp.add_argument("--host", default="0.0.0.0", help="address of the /healthz endpoint")  # noqa: S104 - a pod
    sp.add_argument("--port", type=int, default=8091, help="port of the /healthz endpoint")
    sp.set_defaults(fn=cmd_worker)
