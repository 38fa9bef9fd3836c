"""Models and Overview pages say what is true: where versions serve, which pass the policy's gates, what
compare starts with and against which baseline, champion moves in the recent activity, no "None" cells."""

from __future__ import annotations

import math

import pytest

from tests.ui.conftest import APP, texts

CLS = "breast-cancer-classifier"
GATES = "Gates: cancer-screening"


def no_exception(at):
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def assert_no_missing_cells(at):
    """No table shows None/nan: every missing value is rendered as —."""
    for frame in at.dataframe:
        df = frame.value
        df = getattr(df, "data", df)  # a Styler hands back its frame
        for col in df.columns:
            for x in df[col]:
                assert x is not None and not (isinstance(x, float) and math.isnan(x)), (col, list(df[col]))
                assert str(x) not in ("None", "nan", "NaN", "NaT", "<NA>"), (col, list(df[col]))


def versions_table(at):
    return next(d.value for d in at.dataframe if "Serving" in d.value.columns)


def test_compare_preselects_the_champion_and_the_newest_version(app):
    at = app("models.py", model=CLS)
    no_exception(at)
    assert at.multiselect(key="compare-picker").value == ["2", "5"]
    at.button(key="open-compare").click().run()
    no_exception(at)
    assert at.query_params["compare"] in ("2,5", ["2,5"])
    assert at.title[0].value == f"Compare {CLS}"
    assert at.selectbox(key="compare-baseline").value == "2"


def test_compare_opens_on_metrics_and_takes_the_baseline_from_the_url(app):
    at = app("models.py", model=CLS, compare="2,4,5", baseline="4")
    no_exception(at)
    assert [t.label for t in at.tabs][0] == "Metrics"
    assert at.selectbox(key="compare-baseline").value == "4"
    assert "Baseline: v4" in texts(at)
    metrics = at.dataframe[0].value
    metrics = getattr(metrics, "data", metrics)
    assert {"v2", "v4", "v5", "Δ v2", "Δ v5"} <= set(metrics.columns) and "Δ v4" not in metrics.columns
    acc = metrics.set_index("metric").loc["accuracy"]
    assert float(acc["Δ v5"]) == pytest.approx(float(acc["v5"]) - float(acc["v4"]), abs=2e-4)
    # changing the baseline writes it to the URL and moves the deltas
    at.selectbox(key="compare-baseline").set_value("5").run()
    no_exception(at)
    assert at.query_params["baseline"] in ("5", ["5"])
    metrics = at.dataframe[0].value
    assert "Δ v4" in getattr(metrics, "data", metrics).columns
    assert_no_missing_cells(at)


def test_a_baseline_not_compared_falls_back_to_the_first_version(app):
    at = app("models.py", model=CLS, compare="3,1", baseline="9")
    no_exception(at)
    assert at.selectbox(key="compare-baseline").value == "3"


def test_versions_table_says_where_each_version_serves(app):
    at = app("models.py", model=CLS)
    no_exception(at)
    df = versions_table(at).set_index("Version")
    assert df.loc[2, "Serving"] == "cancer-screening: stable 80%"
    assert df.loc[4, "Serving"] == "cancer-screening: canary 20%"
    assert df.loc[1, "Serving"] == "—"
    assert_no_missing_cells(at)


def test_versions_table_marks_the_policy_gates_per_version(app):
    at = app("models.py", model=CLS)
    df = versions_table(at).set_index("Version")
    marks = df[GATES].to_dict()
    assert "FAIL" in marks[3] and "accuracy" in marks[3], marks  # v3's 0.930 < champion v2's 0.986 − 0.05
    assert all("pass" in marks[v] for v in (1, 2, 4, 5)), marks
    shown = texts(at)
    assert "roc_auc ≥ champion − 0.05" in shown and "accuracy ≥ champion − 0.05 and ≥ 0.85" in shown
    # the description's own "Quality gate: …" line appears only as the authors' note, never as the model's gate
    assert shown.count("Quality gate:") == shown.count("says “Quality gate:")


def test_version_page_says_where_it_serves_and_links_the_endpoint(app):
    at = app("models.py", model=CLS, version="4")
    no_exception(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Serving on cancer-screening"] == "canary 20%"
    assert "Gates of **cancer-screening**" in texts(at) and "**pass**" in texts(at)
    assert_no_missing_cells(at)
    at = app("models.py", model=CLS, version="1")
    assert "Not serving on any endpoint." in texts(at)


def test_version_lineage_source_is_text_not_json(app):
    at = app("models.py", model=CLS, version="2")
    lineage = next(d.value for d in at.dataframe if "dataset" in d.value.columns)
    assert all(not str(s).lstrip().startswith("{") for s in lineage["source"]), list(lineage["source"])
    assert any(str(s).startswith("file://") for s in lineage["source"])
    assert all("rows" in s for s in lineage["shape"])


def test_models_list_and_overview_show_no_none(app):
    for page in ("models.py", None):
        at = app(page)
        no_exception(at)
        assert_no_missing_cells(at)


@pytest.fixture(scope="module")
def moved_env(tmp_path_factory):
    """A demo of its own where bob approved alice's promotion of v4: the champion moved v2 → v4."""
    from services.composition import build
    from services.demo import seed_demo
    from services.settings import Settings

    d = tmp_path_factory.mktemp("moved")
    env = {"MLOPS_DATA_DIR": str(d), "MLFLOW_TRACKING_URI": f"sqlite:///{d / 'mlflow.db'}",
           "MLOPS_DATABASE_URL": f"sqlite:///{d / 'console.db'}"}
    c = build(Settings.from_env(env, secrets_path=d / "none.toml"))
    seed_demo(c.settings, c.registry, c.serving)
    alice, bob = c.directory.get("alice"), c.directory.get("bob")
    out = c.actions.execute(c.actions.plan(alice, "request_promotion", "cancer-screening", version="4"), alice,
                            "v4 is ready")
    c.actions.approve(bob, out.request_id, "looks good")
    c.engine.dispose()
    return env


def test_overview_lists_the_champion_move_with_the_registrations(moved_env, monkeypatch):
    from streamlit.testing.v1 import AppTest

    for k, v in moved_env.items():
        monkeypatch.setenv(k, v)
    for k in ("MLOPS_SERVING_BACKEND", "MLOPS_POLICY_FILE", "MLOPS_DEV_IDENTITIES"):
        monkeypatch.delenv(k, raising=False)
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    no_exception(at)
    df = next(d.value for d in at.dataframe if "What" in d.value.columns)
    first = df.iloc[0]
    assert first["What"] == "@champion v2 → v4, by bob", df
    assert first["Model"] == CLS and first["Where"].startswith("cancer-screening")
    assert (df["What"] == "v5 registered").any() and (df["What"] == "v3 registered").any()
    assert list(df["When"]) == sorted(df["When"], reverse=True)
    assert all(w.endswith(" UTC") and len(w) == len("2026-01-01 00:00 UTC") for w in df["When"])
    assert_no_missing_cells(at)
