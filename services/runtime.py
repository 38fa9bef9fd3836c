"""``python -m services up`` and ``traffic``: the live parts of the embedded demo in one foreground
process — the serving gateway and the prediction-log ingest (each a uvicorn server in its own thread), and
optionally a gentle stream of demo traffic — stopped together by Ctrl-C.

The gateway sends its CloudEvents to ``MLOPS_INGEST_URL`` (default: this process's ingest).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

from services.cli_output import emit

GENTLE = {"rps": 2.0, "chunk_s": 600.0, "labels_delay_s": 30.0}  # per demo endpoint


def _server(app, host: str, port: int, log_level: str):
    import uvicorn

    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                                         lifespan="on"))


def _wait_started(servers, threads, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not all(s.started for s in servers):
        if any(not t.is_alive() for t in threads):
            raise RuntimeError("a server stopped while starting (is its port in use?)")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the servers did not start within {timeout:.0f} s")
        time.sleep(0.1)  # polling a bounded start, not waiting for an outcome


def up(container, *, host: str, gateway_port: int, ingest_port: int, traffic: bool,
       say: Callable[[str], None] = print, log_level: str = "warning") -> int:
    from services.gateway import GatewayConfig
    from services.gateway.app import build_app
    from services.ingest.app import create_app

    ingest_url = f"http://{host}:{ingest_port}/"
    os.environ.setdefault("MLOPS_INGEST_URL", ingest_url)
    config = GatewayConfig.from_env(tracking_uri=container.settings.mlflow_tracking_uri,
                                    source=f"http://localhost:{gateway_port}/")
    servers = [_server(create_app(container), host, ingest_port, log_level),
               _server(build_app(container.registry, container.serving, config), host, gateway_port, log_level)]
    threads = [threading.Thread(target=s.run, name=f"uvicorn-{i}", daemon=True) for i, s in enumerate(servers)]
    for t in threads:
        t.start()
    stop = threading.Event()
    try:
        _wait_started(servers, threads)
        gateway_url = f"http://{host}:{gateway_port}"
        say(f"gateway http://{host}:{gateway_port}  ·  ingest {ingest_url}  ·  Ctrl-C stops both")
        from services.worker import anchor_loop, say_needs_repair

        say_needs_repair(container, say)
        threading.Thread(target=_retention, args=(container, say), daemon=True, name="retention").start()
        from services.alerts.runner import loop as alert_loop  # the alert rules, every MLOPS_ALERT_INTERVAL_SECONDS

        every = container.settings.alert_interval_seconds
        threading.Thread(target=alert_loop, args=(container, every, stop, say), daemon=True, name="alerts").start()
        threading.Thread(target=anchor_loop, args=(container, stop, say), daemon=True, name="audit-anchor").start()
        if traffic:
            for name in _demo_endpoints(container):
                threading.Thread(target=_gentle, args=(name, gateway_url, ingest_url), daemon=True,
                                 name=f"traffic-{name}").start()
                say(f"demo traffic: {GENTLE['rps']:g} requests/s to {name}, labels {GENTLE['labels_delay_s']:g} s late")
        while all(t.is_alive() for t in threads):
            time.sleep(0.5)
        return 1  # a server stopped by itself
    except KeyboardInterrupt:
        return 0
    finally:
        stop.set()
        for s in servers:
            s.should_exit = True
        for t in threads:
            t.join(timeout=10)


def purge_expired(container) -> tuple[int, object]:
    """Drop raw prediction rows older than the retention (``MLOPS_PREDICTION_RETENTION_DAYS``); rollups
    stay, so charts keep their history. Returns the rows dropped and the cut-off."""
    from datetime import timedelta

    cutoff = container.clock() - timedelta(days=container.settings.prediction_retention_days)
    return container.predictions.purge(cutoff), cutoff


def _retention(container, say: Callable[[str], None], every_s: float = 3600.0) -> None:
    while True:
        try:
            dropped, cutoff = purge_expired(container)
            if dropped:
                say(f"retention: dropped {dropped} raw prediction rows older than {cutoff:%Y-%m-%d %H:%M} UTC")
        except Exception as exc:  # noqa: BLE001 - retention retries next hour; serving goes on
            say(f"retention: purge failed ({exc}); will retry")
        time.sleep(every_s)


def cmd_purge(c, args) -> int:
    dropped, cutoff = purge_expired(c)
    emit(args, {"dropped": dropped, "before": cutoff.isoformat()},
          f"dropped {dropped} raw prediction rows older than {cutoff:%Y-%m-%d %H:%M} UTC "
          f"(MLOPS_PREDICTION_RETENTION_DAYS={c.settings.prediction_retention_days}; rollups kept)")
    return 0


def _demo_endpoints(container) -> list[str]:
    from services.traffic import DEMO_CLIENTS

    names = {ep.name for ep in container.serving.list_endpoints()}
    return [n for n in DEMO_CLIENTS if n in names]


def _gentle(endpoint: str, gateway_url: str, ingest_url: str) -> None:
    """Endless, in bounded chunks: each chunk is one ``traffic.run``; a failing chunk waits and retries."""
    from services.traffic import Plan, demo_rows, run

    data = demo_rows(endpoint)
    while True:
        try:
            run(Plan(endpoint, GENTLE["rps"], GENTLE["chunk_s"], labels_delay_s=GENTLE["labels_delay_s"]),
                gateway_url, ingest_url, data=data)
        except Exception:  # noqa: BLE001 - the demo stream keeps going; the servers report their own errors
            time.sleep(5)


def cmd_up(c, args) -> int:
    return up(c, host=args.host, gateway_port=args.port, ingest_port=args.ingest_port,
              traffic=not args.no_traffic, say=print, log_level=args.log_level)


def cmd_traffic(c, args) -> int:
    from services.traffic import Plan, parse_pairs, run

    plan = Plan(args.endpoint, args.rps, args.duration, start_trouble_s=args.from_,
                shift_sds=parse_pairs(args.shift, "--shift"),
                errors=parse_pairs(args.errors, "--errors", numeric_key=True),
                latency_ms=parse_pairs(args.latency, "--latency", numeric_key=True),
                labels_delay_s=args.labels_delay)
    plan.validate()
    summary = run(plan, args.gateway, args.ingest, progress=None if args.json else print)
    emit(args, summary, f"{summary['requests']} requests in {summary['seconds']} s; by version "
                         + ", ".join(f"v{v}: {n}" for v, n in sorted(summary["by_version"].items()))
                         + "; statuses " + ", ".join(f"{k}: {n}" for k, n in sorted(summary["statuses"].items())))
    return 0


def add_commands(sub, common) -> None:
    sp = sub.add_parser("up", help="run the serving gateway and the ingest together (and demo traffic)",
                        parents=[common])
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--port", type=int, default=8080, help="gateway port")
    sp.add_argument("--ingest-port", type=int, default=8090)
    sp.add_argument("--no-traffic", action="store_true", help="no demo traffic stream")
    sp.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"])
    sp.set_defaults(fn=cmd_up)
    sub.add_parser("purge-predictions", help="drop raw prediction rows past the retention (rollups stay)",
                   parents=[common]).set_defaults(fn=cmd_purge)
    sp = sub.add_parser("traffic", help="send demo traffic to the gateway, with injected trouble", parents=[common])
    sp.add_argument("--endpoint", required=True)
    sp.add_argument("--rps", type=float, default=5.0)
    sp.add_argument("--duration", type=float, default=60.0, help="seconds")
    sp.add_argument("--from", dest="from_", type=float, default=0.0, metavar="SECONDS",
                    help="inject the trouble from this second on")
    sp.add_argument("--shift", action="append", metavar="FEATURE=SDS", help="shift a feature (repeatable)")
    sp.add_argument("--errors", action="append", metavar="VERSION=RATE", help="that share of answers fail")
    sp.add_argument("--latency", action="append", metavar="VERSION=MS", help="extra latency")
    sp.add_argument("--labels-delay", type=float, default=None, metavar="SECONDS", help="send labels this late")
    sp.add_argument("--gateway", default="http://127.0.0.1:8080")
    sp.add_argument("--ingest", default=os.environ.get("MLOPS_INGEST_URL", "http://127.0.0.1:8090/"))
    sp.set_defaults(fn=cmd_traffic)
    from services.worker import add_command as add_worker
    add_worker(sub, common)  # worker: the jobs that run once per installation (deploy/worker.yaml)
