"""Explanation drift (pure): how the use of features differs between two explanations of the same kind of rows —
two versions on the same rows, or one version on its reference and on a production window.

Per feature: mean |SHAP| in each, its **share** of the total (mean |SHAP| normalised to sum to 1, so two
versions whose outputs live in different spaces — log-odds and probability — still compare), the rank in each
and the rank change, and the shift of its share. Overall: the **attribution shift**, half the sum of the
absolute share differences (the total-variation distance between the two importance profiles: 0 the same, 1
disjoint), and Spearman's rank correlation over the features both use.
"""

from __future__ import annotations

from services.explain import Explanation


def explanation_drift(a: Explanation, b: Explanation) -> dict:
    """``b`` against ``a`` (the baseline): per feature rank change and share shift, most shifted first."""
    ia = {r["feature"]: r for r in a.importance()}
    ib = {r["feature"]: r for r in b.importance()}
    names = list(dict.fromkeys([*ia, *ib]))
    rows = []
    for f in names:
        ra, rb = ia.get(f), ib.get(f)
        share_a = ra["share"] if ra else 0.0
        share_b = rb["share"] if rb else 0.0
        rows.append({
            "feature": f,
            "rank_a": ra["rank"] if ra else None, "rank_b": rb["rank"] if rb else None,
            # positive: the feature moved up (more important in b)
            "rank_change": ra["rank"] - rb["rank"] if ra and rb else None,
            "mean_abs_shap_a": ra["mean_abs_shap"] if ra else None,
            "mean_abs_shap_b": rb["mean_abs_shap"] if rb else None,
            "share_a": share_a, "share_b": share_b, "shift": share_b - share_a,
            "only_in": None if ra and rb else ("a" if ra else "b"),
        })
    rows.sort(key=lambda r: (-abs(r["shift"]), r["feature"]))
    common = [f for f in names if f in ia and f in ib]
    return {
        "a": a.describe(), "b": b.describe(),
        "features": rows,
        "attribution_shift": 0.5 * sum(abs(r["shift"]) for r in rows),
        "rank_correlation": _spearman([ia[f]["rank"] for f in common], [ib[f]["rank"] for f in common]),
        "common_features": len(common),
        "same_output_space": a.output_space == b.output_space,
        "same_rows": a.sample == b.sample and a.rows == b.rows,
    }


def _spearman(x: list[int], y: list[int]) -> float | None:
    """Spearman's rho of two rankings (None below 2 features, or when either is constant)."""
    if len(x) < 2:
        return None
    from scipy.stats import spearmanr

    rho = spearmanr(x, y).statistic
    return None if rho != rho else float(rho)
