"""What differs between versions (pure): parameters, metrics (with the better direction), signatures,
dependencies. The pages, the CLI and the tests share these definitions of "what differs"."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from services.registry import Signature

LOWER_IS_BETTER = re.compile(r"(loss|error|mae|mse|rmse|mape|latency|time|brier|deviance|wape)", re.I)


def metric_direction(name: str) -> str:
    """"lower" when a smaller value is better (losses, errors, latency), else "higher"."""
    return "lower" if LOWER_IS_BETTER.search(name) else "higher"


# -- list / detail -------------------------------------------------------------
def param_diff(by_version: Mapping[str, Mapping[str, str]], differences_only: bool = False) -> list[dict]:
    """One row per key: {"key", <version>: value or None, "differs": bool}."""
    keys = sorted({k for d in by_version.values() for k in d})
    rows = []
    for k in keys:
        values = {v: d.get(k) for v, d in by_version.items()}
        differs = len({str(x) for x in values.values()}) > 1
        if differences_only and not differs:
            continue
        rows.append({"key": k, **values, "differs": differs})
    return rows


def metric_diff(by_version: Mapping[str, Mapping[str, float]], baseline: str | None = None) -> list[dict]:
    """Rows per metric with each version's value and its delta against the baseline
    (``baseline`` when it is one of the versions, else the first version).

    ``better``: per version, True/False/None whether it beats the baseline in
    the metric's direction.
    """
    versions = list(by_version)
    base_v = pick_baseline(versions, baseline)
    keys = sorted({k for d in by_version.values() for k in d})
    rows = []
    for k in keys:
        direction = metric_direction(k)
        base = by_version[base_v].get(k) if base_v else None
        row: dict = {"metric": k, "direction": direction, "values": {}, "deltas": {}, "better": {}}
        for v in versions:
            val = by_version[v].get(k)
            row["values"][v] = val
            if val is None or base is None or v == base_v:
                row["deltas"][v] = None
                row["better"][v] = None
                continue
            delta = val - base
            row["deltas"][v] = delta
            row["better"][v] = None if delta == 0 else ((delta > 0) == (direction == "higher"))
        rows.append(row)
    return rows


def _status(base, others: list, changed: str) -> str:
    """same | added (not in the baseline) | removed (gone where it differs) | ``changed``."""
    if all(x == base for x in others):
        return "same"
    if base is None:
        return "added"
    if all(x is None or x == base for x in others):
        return "removed"
    return changed


def signature_diff(by_version: Mapping[str, Signature | None], baseline: str | None = None) -> list[dict]:
    """Rows per (section, column): type per version and a status.

    status: same | added | removed | type changed, relative to ``baseline`` (default: the first version).
    """
    versions = list(by_version)
    base_v = pick_baseline(versions, baseline)
    others = [v for v in versions if v != base_v]
    rows = []
    for section in ("inputs", "outputs", "params"):
        cols: list[str] = []
        per: dict[str, dict[str, str]] = {}
        for v in versions:
            sig = by_version[v]
            items = getattr(sig, section) if sig else ()
            per[v] = dict(items)
            for name, _t in items:
                if name not in cols:
                    cols.append(name)
        for c in cols:
            types = {v: per[v].get(c) for v in versions}
            status = _status(types[base_v], [types[v] for v in others], "type changed")
            rows.append({"section": section, "column": c, **types, "status": status})
    return rows


_REQ = re.compile(r"^\s*([A-Za-z0-9_.\-\[\]]+)\s*(.*)$")


def _parse_requirement(line: str) -> tuple[str, str]:
    m = _REQ.match(line)
    if not m:
        return line.strip(), ""
    name = re.sub(r"\[.*\]", "", m.group(1)).lower().replace("_", "-")
    return name, m.group(2).strip()


def dependency_diff(by_version: Mapping[str, Sequence[str]], baseline: str | None = None) -> list[dict]:
    """Rows per package: its specifier per version and added/removed/changed/same
    relative to ``baseline`` (default: the first version)."""
    versions = list(by_version)
    base_v = pick_baseline(versions, baseline)
    others = [v for v in versions if v != base_v]
    parsed = {v: dict(_parse_requirement(r) for r in reqs) for v, reqs in by_version.items()}
    names = sorted({n for d in parsed.values() for n in d})
    rows = []
    for n in names:
        specs = {v: parsed[v].get(n) for v in versions}
        status = _status(specs[base_v], [specs[v] for v in others], "changed")
        rows.append({"package": n, **specs, "status": status})
    return rows


def pick_baseline(versions: Sequence[str], wanted: str | None) -> str | None:
    """The baseline of a comparison: ``wanted`` when it is one of the versions, else the first."""
    w = str(wanted).strip().lstrip("vV") if wanted is not None else ""
    return w if w in versions else (versions[0] if versions else None)
