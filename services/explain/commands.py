"""``python -m services explain --model M --version V [--rows F.parquet|F.csv] [--json]``: the explainer used,
the output space, the base value, and per row the attributions by feature name and the model output they add
up to (registered by services.cli)."""

from __future__ import annotations

from pathlib import Path

from services.cli_output import emit
from services.errors import Invalid, NotFound
from services.explain import SOURCE, Explanation


def read_rows(path: str):
    """A Parquet (``.parquet``/``.pq``) or CSV (``.csv``) file as a frame."""
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise NotFound(f"no file {path}", source=SOURCE)
    suffix = p.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(p)
        if suffix == ".csv":
            return pd.read_csv(p)
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad file
        raise Invalid(f"cannot read {path}: {type(exc).__name__}: {str(exc)[:200]}", source=SOURCE) from exc
    raise Invalid(f"--rows must be a .parquet or .csv file, not {p.name}", source=SOURCE)


def explanation_text(exp: Explanation, top: int = 5) -> str:
    """The header (explainer, output space, base value, background, sample) and per row its largest pushes."""
    out = [f"{exp.model} v{exp.version}: {exp.explainer} on {exp.estimator}",
           f"output space: {exp.output_label} · base value {exp.base_value:.6g}",
           f"background: {exp.background}", f"rows: {exp.sample}"]
    out += [f"note: {n}" for n in exp.notes]
    ids = list(exp.row_ids) or list(range(exp.rows))
    for i in range(exp.rows):
        order = sorted(range(len(exp.features)), key=lambda j: -abs(exp.values[i, j]))
        shown = [f"{exp.features[j]} {exp.values[i, j]:+.4g}" for j in order[:top]]
        rest = order[top:]
        if rest:
            shown.append(f"{len(rest)} more {sum(exp.values[i, j] for j in rest):+.4g}")
        out.append(f"row {ids[i]}: output {exp.outputs[i]:.6g} = base {exp.base_value:.6g} + " + ", ".join(shown))
    return "\n".join(out)


def add_command(sub, common) -> None:
    sp = sub.add_parser("explain", parents=[common],
                        help="SHAP attributions of a model version for rows of a Parquet or CSV file")
    sp.add_argument("--model", required=True)
    sp.add_argument("--version", required=True)
    sp.add_argument("--rows", metavar="FILE",
                    help="Parquet or CSV with the version's input columns (default: its held-out frame)")
    sp.add_argument("--class", dest="target_class", default=None,
                    help="a classifier's class to explain (default: the positive / last class)")
    sp.add_argument("--top", type=int, default=5, help="text output: the largest attributions shown per row")
    sp.set_defaults(fn=run)


def run(c, args) -> int:
    from services.explain.service import for_registry

    explainer = for_registry(c.registry)
    if args.rows:
        frame = read_rows(args.rows)
        exp = explainer.explain_rows(args.model, args.version, frame, target_class=args.target_class,
                                     sample=f"{len(frame)} rows of {Path(args.rows).name}")
    else:
        exp = explainer.explain_version(args.model, args.version, target_class=args.target_class)
    emit(args, exp.as_dict(), explanation_text(exp, max(1, args.top)))
    return 0
