"""Benchmark: a guarded promote end to end, and verifying a 100,000-entry audit chain.

    python bench/actions.py [--promotions 30] [--entries 100000] [--reps 5]

(a) Guarded promote on the local serving backend, console database on SQLite,
    registry = a real MLflow SQLite store with two real sklearn versions (built
    with ``tests/conftest.py``'s ``_log_version``). Policy: no approval needed,
    one offline gate (accuracy), so gates are evaluated. Each sample is
    ``Actions.plan`` (role check, endpoint read, champion, versions, gates,
    diff, hash) + ``Actions.execute`` (CAS update of the endpoint, alias move in
    MLflow, audit append), alternating v1 -> v2 -> v1 ...
    Baseline, same run, same engines: the bare parts only: one
    ``MlflowClient.set_registered_model_alias`` + one compare-and-set ``UPDATE``
    on an endpoint row. Target: median < 300 ms.

(b) ``SqlAuditTrail.verify`` over ``--entries`` rows on SQLite, filled by a bulk
    insert of rows chained with ``services.audit.entry_hash``.
    Baseline, same run: a plain ``SELECT`` of the same columns with the sqlite3
    module + sha256 over each row. Target: < 2 s.

A plain script, not a test: always exits 0 and prints TARGET MET / MISSED.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import hashlib
import io
import logging
import os
import pstats
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402, F401  (sets up sys.path and MLflow's environment)

ENDPOINT = "screening"
BASELINE_MODEL = "bench-baseline"
PROMOTE_TARGET_S = 0.300
VERIFY_TARGET_S = 2.0
POLICY = {
    "defaults": {
        "require_approval": [],
        "gates": {"offline": [{"metric": "accuracy", "direction": "higher", "max_regression": 0.05}]},
    },
}


def ms(s: float) -> str:
    return f"{s * 1000:,.1f} ms"


def verdict(ok: bool) -> str:
    return "TARGET MET" if ok else "TARGET MISSED"


# -- (a) guarded promote ----------------------------------------------------------------
def setup_promote(tmp: Path):
    import mlflow
    from mlflow import MlflowClient

    from tests.conftest import MODEL, _log_version, make_container

    reg = tmp / "registry"
    reg.mkdir()
    uri = f"sqlite:///{reg / 'mlflow.db'}"
    t0 = time.perf_counter()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(uri, uri)
    exp = client.create_experiment("bench", artifact_location=(reg / "artifacts").as_uri())
    client.create_registered_model(MODEL, description="bench classifier")
    _log_version(client, exp, MODEL, C=0.1, accuracy=0.90)
    _log_version(client, exp, MODEL, C=1.0, accuracy=0.93)
    client.set_registered_model_alias(MODEL, "champion", "1")
    client.create_registered_model(BASELINE_MODEL)
    for _ in range(2):
        client.create_model_version(BASELINE_MODEL, (reg / "artifacts" / "x").as_uri())
    client.set_registered_model_alias(BASELINE_MODEL, "champion", "1")
    build_s = time.perf_counter() - t0

    c = make_container(uri, f"sqlite:///{tmp / 'console.db'}", tmp, policy=POLICY)
    c.serving.ensure_endpoint(ENDPOINT, MODEL, "1")
    c.serving.ensure_endpoint("bench-baseline", BASELINE_MODEL, "1")
    return c, client, MODEL, build_s


def promote_once(c, actor, version: str):
    gc.collect()
    t0 = time.perf_counter()
    plan = c.actions.plan(actor, "request_promotion", ENDPOINT, version=version)
    t1 = time.perf_counter()
    out = c.actions.execute(plan, actor, "bench: promote")
    t2 = time.perf_counter()
    if out.status != "applied" or not plan.gates or any(g.passed is False for g in plan.gates):
        raise SystemExit(f"unexpected promote outcome: {out.status}, gates {plan.gates}")
    return t1 - t0, t2 - t1


def bare_once(c, client, version: str) -> float:
    """The floor: move the alias in MLflow + one compare-and-set UPDATE of an endpoint row."""
    from sqlalchemy import text

    gc.collect()
    t0 = time.perf_counter()
    client.set_registered_model_alias(BASELINE_MODEL, "champion", version)
    with c.engine.begin() as conn:
        rv = conn.execute(text("SELECT resource_version FROM endpoints WHERE name = 'bench-baseline'")).scalar_one()
        res = conn.execute(text("UPDATE endpoints SET stable_version = :v, resource_version = :n "
                                "WHERE name = 'bench-baseline' AND resource_version = :rv"),
                           {"v": version, "n": rv + 1, "rv": rv})
        assert res.rowcount == 1
    return time.perf_counter() - t0


def bench_promote(tmp: Path, n: int, profile: bool) -> dict:
    c, client, model, build_s = setup_promote(tmp)
    actor = c.directory.get("alice")
    versions = ["2", "1"]
    for i in range(4):  # warm-up: imports, engines, first queries
        promote_once(c, actor, versions[i % 2])
        bare_once(c, client, versions[i % 2])
    plan_t, exec_t, total_t, bare_t = [], [], [], []
    for i in range(n):  # interleaved
        p, e = promote_once(c, actor, versions[i % 2])
        plan_t.append(p)
        exec_t.append(e)
        total_t.append(p + e)
        bare_t.append(bare_once(c, client, versions[i % 2]))
    ep = c.serving.get_endpoint(ENDPOINT)
    champion = client.get_registered_model(model).aliases.get("champion")
    if ep.stable_version != str(champion):
        raise SystemExit(f"endpoint serves v{ep.stable_version} but champion is v{champion}")
    result = {
        "build_s": build_s, "n": n, "plan": statistics.median(plan_t), "execute": statistics.median(exec_t),
        "total": statistics.median(total_t), "bare": statistics.median(bare_t),
        "total_best": min(total_t), "bare_best": min(bare_t),
        "audit_entries": c.audit.count(), "profile": "",
    }
    total_ok = result["total"] < PROMOTE_TARGET_S
    if profile or not total_ok:
        prof = cProfile.Profile()
        prof.enable()
        for i in range(6):
            promote_once(c, actor, versions[(n + i) % 2])
        prof.disable()
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(
            r"(services|mlflow/store|mlflow/tracking/client)", 25)
        result["profile"] = out.getvalue()
    c.engine.dispose()
    return result


# -- (b) audit chain verification ---------------------------------------------------------
def fill_audit(db: Path, n: int):
    from sqlalchemy import insert

    from services.audit import GENESIS, canonical, entry_hash
    from services.store.db import audit_log, make_engine

    engine = make_engine(f"sqlite:///{db}")
    t0 = time.perf_counter()
    prev = GENESIS
    rows = []
    base_ts = 1_780_000_000
    for seq in range(1, n + 1):
        v_from, v_to = str(seq % 7 + 1), str((seq + 1) % 7 + 1)
        row = {
            "seq": seq,
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(base_ts + seq)) + f".{seq % 1_000_000:06d}Z",
            "actor": ("alice", "bob", "dana")[seq % 3],
            "action": "request_promotion",
            "target": f"endpoint-{seq % 20}",
            "result": "ok" if seq % 10 else "refused",
            "reason": f"bench entry {seq}: promote after review",
            "error": "" if seq % 10 else "precondition_failed: policy: evidence gates failed",
            "before": canonical({"stable_version": v_from, "canary_version": None, "canary_weight": 0,
                                 "resource_version": str(seq), "champion": v_from}),
            "after": canonical({"stable_version": v_to, "canary_version": None, "canary_weight": 0,
                                "resource_version": str(seq + 1), "champion": v_to}),
            "gates": canonical([{"name": "accuracy (higher is better)", "kind": "offline", "passed": True,
                                 "candidate": 0.93, "baseline": 0.90, "threshold": 0.85, "detail": "ok"}]),
            "details": canonical({"plan_hash": hashlib.sha256(str(seq).encode()).hexdigest(),
                                  "overridden_gates": [], "override_reason": None, "backend": "local"}),
        }
        row["prev_hash"] = prev
        row["hash"] = prev = entry_hash(prev, row)
        rows.append(row)
    t_rows = time.perf_counter() - t0
    t0 = time.perf_counter()
    with engine.begin() as conn:
        for i in range(0, n, 10_000):
            conn.execute(insert(audit_log), rows[i:i + 10_000])
    t_insert = time.perf_counter() - t0
    return engine, prev, t_rows, t_insert


COLS = ("seq", "ts", "actor", "action", "target", "result", "reason", "error", "before", "after", "gates",
        "details", "prev_hash", "hash")


def plain_select_sha(db: Path) -> int:
    """The floor: read every row with the sqlite3 module and sha256 it."""
    con = sqlite3.connect(db)
    n = 0
    sha = hashlib.sha256
    try:
        for row in con.execute(f"SELECT {', '.join(COLS)} FROM audit_log ORDER BY seq"):
            sha("\x1f".join(str(x) for x in row).encode("utf-8")).hexdigest()
            n += 1
    finally:
        con.close()
    return n


def bench_verify(tmp: Path, n: int, reps: int, profile: bool) -> dict:
    from services.audit.sql import SqlAuditTrail

    db = tmp / "audit.db"
    engine, head, t_rows, t_insert = fill_audit(db, n)
    log = SqlAuditTrail(engine)
    res = log.verify()  # warm-up (and correctness)
    if not (res.ok and res.entries == n and res.head_hash == head):
        raise SystemExit(f"verify disagrees with the chain it was given: {res}")
    if plain_select_sha(db) != n:
        raise SystemExit("baseline read a different number of rows")
    ours, base = [], []
    for _ in range(reps):
        gc.collect()
        t0 = time.perf_counter()
        log.verify()
        ours.append(time.perf_counter() - t0)
        gc.collect()
        t0 = time.perf_counter()
        plain_select_sha(db)
        base.append(time.perf_counter() - t0)
    result = {"n": n, "fill_rows": t_rows, "fill_insert": t_insert, "verify": statistics.median(ours),
              "verify_best": min(ours), "baseline_best": min(base),
              "baseline": statistics.median(base), "db_mb": db.stat().st_size / 1e6, "profile": ""}
    if profile or result["verify"] >= VERIFY_TARGET_S:
        prof = cProfile.Profile()
        prof.enable()
        log.verify()
        prof.disable()
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(15)
        result["profile"] = out.getvalue()
    engine.dispose()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--promotions", type=int, default=30)
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--reps", type=int, default=5, help="repetitions of the audit verification")
    ap.add_argument("--profile", action="store_true", help="print profiles even when targets are met")
    args = ap.parse_args()
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)

    load_before = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="bench-actions-"))
    try:
        (tmp / "promote").mkdir()
        (tmp / "audit").mkdir()
        a = bench_promote(tmp / "promote", args.promotions, args.profile)
        b = bench_verify(tmp / "audit", args.entries, args.reps, args.profile)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\nsetup: registry with 2 real sklearn versions built in {a['build_s']:.1f} s; "
          f"{b['n']:,} chained audit rows computed in {b['fill_rows']:.2f} s and bulk-inserted in "
          f"{b['fill_insert']:.2f} s ({b['db_mb']:.0f} MB)")
    print()
    print("## Guarded actions (SQLite, local serving backend)")
    print()
    print("| measurement | ours (median) | baseline (median) | ratio | ratio, best of n | target | |")
    print("|---|---:|---:|---:|---:|---:|---|")
    ok_a = a["total"] < PROMOTE_TARGET_S
    print(f"| guarded promote, plan + execute (n={a['n']}) | {ms(a['total'])} | {ms(a['bare'])} "
          f"| {a['total'] / a['bare']:.1f}× | {a['total_best'] / a['bare_best']:.1f}× "
          f"| < {PROMOTE_TARGET_S * 1000:.0f} ms | {verdict(ok_a)} |")
    print(f"| · plan (role, state, gates, diff, hash) | {ms(a['plan'])} | | | | | |")
    print(f"| · execute (CAS apply, alias move, audit append) | {ms(a['execute'])} | | | | | |")
    ok_b = b["verify"] < VERIFY_TARGET_S
    print(f"| `SqlAuditTrail.verify`, {b['n']:,} entries (n={args.reps}) | {ms(b['verify'])} | {ms(b['baseline'])} "
          f"| {b['verify'] / b['baseline']:.2f}× | {b['verify_best'] / b['baseline_best']:.2f}× "
          f"| < {VERIFY_TARGET_S:.0f} s | {verdict(ok_b)} |")
    print()
    print("Baselines: promote = bare `MlflowClient.set_registered_model_alias` + one CAS `UPDATE endpoints` "
          "on the same engines; verify = plain sqlite3 `SELECT` of the same columns + sha256 per row. "
          f"1-min load average {load_before:.1f} → {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs.")
    if a["profile"]:
        print("\n### promote profile (6 promotions, cumulative)\n```\n" + a["profile"] + "```")
    if b["profile"]:
        print("\n### verify profile (tottime)\n```\n" + b["profile"] + "```")


if __name__ == "__main__":
    main()
