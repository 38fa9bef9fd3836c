"""``python -m services ingest | predictions | labels``: run the ingest, read the prediction log, load labels.

:func:`add_commands` is called by :mod:`services.cli`; output goes through :mod:`services.cli_output`.
"""

from __future__ import annotations

import csv
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from services.cli_output import emit, table
from services.clock import parse_iso
from services.errors import Invalid


def cmd_ingest(c, args) -> int:
    import uvicorn

    from services.ingest.app import create_app

    uvicorn.run(create_app(c), host=args.host, port=args.port, log_level=args.log_level, access_log=False)
    return 0


def _bound(value: str | None, what: str, *, end: bool = False) -> datetime | None:
    from services.audit import time_bound

    text = time_bound(value, end=end, what=what)
    return parse_iso(text) if text else None


def cmd_predictions(c, args) -> int:
    start, end = _bound(args.from_, "--from"), _bound(args.to, "--to", end=True)
    if start and end and start > end:
        raise Invalid(f"--from {args.from_} is after --to {args.to}", source="cli")
    rows = c.predictions.rows(args.endpoint, start=start, end=end, request_id=args.request_id, limit=args.limit)
    data = [r.as_dict() for r in rows]
    cells = [[r.request_id, r.row, r.at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3], r.endpoint,
              f"v{r.version}" if r.version else None, r.role, _json(r.features), _json(r.prediction),
              _json(r.label) if r.label is not None else None,
              f"{r.latency_ms:.1f} ms" if r.latency_ms is not None else None,
              r.status if not r.error else f"{r.status} {r.error}"] for r in rows]
    text = table(["REQUEST ID", "ROW", "TIME (UTC)", "ENDPOINT", "VERSION", "ROLE", "FEATURES",
                  "PREDICTION", "LABEL", "LATENCY", "STATUS"], cells)
    emit(args, data, text if rows else "(no predictions match)")
    return 0


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def read_labels(path: Path) -> list[tuple[str, int | None, Any]]:
    """A CSV with columns ``request_id``, optional ``row``, ``label``; a label that reads as JSON (``1``,
    ``0.5``, ``true``, ``"a"``) is that value, anything else the text itself."""
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            cols = set(reader.fieldnames or [])
            if not {"request_id", "label"} <= cols:
                raise Invalid(f"{path} needs the columns request_id and label (and optionally row); it has "
                              f"{', '.join(sorted(cols)) or 'none'}", source="cli")
            out = []
            for n, rec in enumerate(reader, start=2):
                rid, label, row = (rec.get("request_id") or "").strip(), rec.get("label"), (rec.get("row") or "")
                if not rid or label is None or not label.strip():
                    raise Invalid(f"{path} line {n}: request_id and label are required", source="cli")
                if row.strip() and not row.strip().isdigit():
                    raise Invalid(f"{path} line {n}: row {row!r} is not a non-negative integer", source="cli")
                try:
                    value = json.loads(label)
                except ValueError:
                    value = label.strip()
                out.append((rid, int(row) if row.strip() else None, value))
            return out
    except OSError as exc:
        raise Invalid(f"cannot read {path}: {exc.strerror or exc}", source="cli") from None


def cmd_labels(c, args) -> int:
    labels = read_labels(Path(args.file))
    res = c.predictions.add_labels(labels)
    text = f"stored {res.stored} label(s) from {len(labels)} line(s)"
    if res.unknown:
        text += f"; no logged prediction for {len(res.unknown)} request id(s): {', '.join(res.unknown[:20])}"
        text += " …" if len(res.unknown) > 20 else ""
    emit(args, {"stored": res.stored, "lines": len(labels), "unknown": res.unknown}, text)
    return 0


def add_commands(sub, common) -> None:
    sp = sub.add_parser("ingest", help="receive KServe inference-logger CloudEvents into the prediction log",
                        parents=[common])
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--port", type=int, default=8090)
    sp.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"])
    sp.set_defaults(fn=cmd_ingest)
    sp = sub.add_parser("predictions", help="logged predictions of an endpoint, newest first", parents=[common])
    sp.add_argument("--endpoint", required=True)
    sp.add_argument("--request-id", default=None)
    sp.add_argument("--from", dest="from_", metavar="WHEN", help="from this ISO date or datetime on (UTC)")
    sp.add_argument("--to", metavar="WHEN", help="up to this ISO date (the whole day) or datetime")
    sp.add_argument("--limit", type=int, default=50, help="at most this many rows (0: all)")
    sp.set_defaults(fn=cmd_predictions)
    sp = sub.add_parser("labels", help="load ground truth from a CSV (request_id[,row],label)", parents=[common])
    sp.add_argument("--file", required=True)
    sp.set_defaults(fn=cmd_labels)
