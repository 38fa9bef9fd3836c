"""``python -m services drift``: per-column drift of a current dataset against a reference, and the dataset verdict.

Files mode: ``--reference A --current B`` (CSV or Parquet, by extension), computed by
:func:`services.drift.stats.dataset_drift`. The command is built for more modes: ``--reference``/``--current``
are optional and :func:`run` dispatches on what was given (a mode over logged traffic, reading the stored
histograms, adds its arguments to the parser :func:`add_command` returns and its branch in :func:`run`).
"""

from __future__ import annotations

from pathlib import Path

from services.cli_output import table
from services.errors import Invalid

SOURCE = "drift"
READERS = {".csv": "CSV", ".parquet": "Parquet", ".pq": "Parquet"}
HEADERS = ["COLUMN", "KIND", "METHOD", "STATISTIC", "P-VALUE", "THRESHOLD", "DRIFTED", "ROWS REF/CUR", "MISSING"]


def read_table(path: str, what: str):
    """A CSV or Parquet file as a DataFrame; anything else, a missing or unreadable file, is :class:`Invalid`."""
    import pandas as pd

    p = Path(path)
    fmt = READERS.get(p.suffix.lower())
    if fmt is None:
        raise Invalid(f"{what} {path}: give a .csv or .parquet file", source=SOURCE)
    if not p.is_file():
        raise Invalid(f"{what} {path}: no such file", source=SOURCE)
    try:
        return pd.read_csv(p) if fmt == "CSV" else pd.read_parquet(p)
    except (OSError, ValueError) as exc:  # pyarrow's and pandas' parse errors are ValueErrors
        raise Invalid(f"{what} {path}: cannot read it as {fmt}", source=SOURCE,
                      detail=" ".join(str(exc).split())[:300]) from exc


def _names(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise Invalid("give column names separated by commas", source=SOURCE)
    return names


def files_report(reference_path: str, current_path: str, *, method: str | None = None,
                 columns: list[str] | None = None, categorical: list[str] | None = None,
                 share_threshold: float = 0.5) -> dict:
    """The drift of ``current_path`` against ``reference_path`` as plain data (what ``--json`` prints)."""
    from services.drift.stats import check_method, dataset_drift

    chosen = check_method(method)  # an unknown method is refused before any file is read
    reference = read_table(reference_path, "reference")
    current = read_table(current_path, "current")
    common = [c for c in reference.columns if c in current.columns]
    if not common:
        raise Invalid(f"the reference and current files have no column in common (reference: "
                      f"{', '.join(map(str, reference.columns[:10])) or 'none'}; current: "
                      f"{', '.join(map(str, current.columns[:10])) or 'none'})", source=SOURCE)
    known = set(map(str, reference.columns)) | set(map(str, current.columns))
    unknown = [c for c in (columns or []) + (categorical or []) if c not in known]
    if unknown:
        raise Invalid(f"no column {', '.join(unknown)} in either file", source=SOURCE)
    names = columns if columns is not None else list(dict.fromkeys([*reference.columns, *current.columns]))
    result = dataset_drift(reference, current, columns=names, methods=dict.fromkeys(names, chosen),
                           kinds=dict.fromkeys(categorical or [], "categorical"), share_threshold=share_threshold)
    return {"mode": "files", "reference": reference_path, "current": current_path, **result.as_dict()}


def _num(value, fmt: str) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else fmt.format(value)


def report_text(rep: dict) -> str:
    rows = [[c["column"], c["kind"], c["method"], _num(c["statistic"], "{:.4g}"), _num(c["p_value"], "{:.3g}"),
             _num(c["threshold"], "{:g}"), None if c["drifted"] is None else "DRIFT" if c["drifted"] else "no",
             f"{c['reference_rows']}/{c['current_rows']}", f"{c['missing_reference']}/{c['missing_current']}"]
            for c in rep["columns"]]
    notes = [[f"not computable: {c['reason']}"] if not c["computable"] else [] for c in rep["columns"]]
    out = [f"{rep['current']} against {rep['reference']}", table(HEADERS, rows, notes=notes)]
    if rep["share"] is None:
        out.append("dataset drift: not computable (no column could be compared)")
    else:
        verdict = "DATASET DRIFT" if rep["drifted"] else "no dataset drift"
        out.append(f"{verdict}: {rep['drifted_columns']} of {rep['computable_columns']} computable columns drifted "
                   f"({rep['share']:.0%}; threshold {rep['share_threshold']:.0%})")
    return "\n".join(out)
