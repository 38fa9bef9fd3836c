"""``python -m services seed-history``: backdated demo traffic through the ingest's own code, on a freshly
seeded demo. Two days ending at a fixed time in the past (deterministic: fixed seed, fixed "now"); the
aborted canary, the drift and the labels are checked through the same services the Monitoring page and the
gates read (``Container.metrics``, the prediction log, the serving history)."""

from __future__ import annotations

import json
import statistics
from datetime import UTC, datetime, timedelta

import pytest

from services.cli import main

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)  # before the seed's own "endpoint created" entry (real time)
DAYS = 2
EP = "cancer-screening"
DRIFT = "mean texture"

pytestmark = pytest.mark.slow  # a real demo seed, model loads and a few thousand requests


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    from services.composition import build
    from services.demo import seed_demo
    from services.settings import Settings

    d = tmp_path_factory.mktemp("demo-history")
    env = {"MLOPS_DATA_DIR": str(d), "MLFLOW_TRACKING_URI": f"sqlite:///{d / 'mlflow.db'}",
           "MLOPS_DATABASE_URL": f"sqlite:///{d / 'console.db'}"}
    c = build(Settings.from_env(env, secrets_path=d / "none.toml"))
    seed_demo(c.settings, c.registry, c.serving)
    yield c
    c.engine.dispose()


@pytest.fixture(scope="module")
def history(seeded):
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["seed-history", "--days", str(DAYS), "--now", NOW.isoformat(), "--json"], container=seeded)
    assert code == 0, out.getvalue()[-2000:]
    return json.loads(out.getvalue())


def _all_rows(c, endpoint: str, start=None, end=None):
    return c.predictions.rows(endpoint, start=start, end=end, limit=0)


def test_rows_for_every_day_on_both_endpoints(seeded, history):
    assert not history["skipped"]
    for ep in ("cancer-screening", "diabetes-risk"):
        info = history["endpoints"][ep]
        assert info["rows"] >= info["requests"] > 1000, info
        for day in range(DAYS):
            start = NOW - timedelta(days=DAYS - day)
            rows = _all_rows(seeded, ep, start, start + timedelta(days=1))
            assert len(rows) > 500, (ep, day, len(rows))
        versions = {r.version for r in _all_rows(seeded, ep)}
        assert versions == ({"2", "4", "5"} if ep == EP else {"2"}), (ep, versions)


def _bad_canary(history) -> dict:
    bad = history["endpoints"][EP]["canaries"][0]
    assert bad["version"] == "5" and bad["weight"] == 20
    return {**bad, "from": datetime.fromisoformat(bad["from"]), "to": datetime.fromisoformat(bad["to"])}


def test_the_aborted_canary_fails_more_and_slower_than_stable(seeded, history):
    bad = _bad_canary(history)
    assert bad["to"] - bad["from"] == timedelta(hours=3)
    stats = {(s.version, s.role): s for s in seeded.metrics.summary(EP, bad["from"], bad["to"])}
    assert set(stats) == {("2", "stable"), ("5", "canary")}, stats
    canary, stable = stats[("5", "canary")], stats[("2", "stable")]
    assert canary.requests > 10 and stable.requests > 4 * canary.requests
    assert canary.error_rate > 0.05 > stable.error_rate, (canary, stable)
    assert canary.latency_p50_ms > 3 * stable.latency_p50_ms
    # after the abort only stable answers, until the current canary starts
    later = seeded.metrics.summary(EP, bad["to"], bad["to"] + timedelta(hours=3))
    assert {(s.version, s.role) for s in later} == {("2", "stable")}


def test_serving_history_agrees_with_the_traffic(seeded, history):
    bad = _bad_canary(history)
    mid = seeded.history.served_at(EP, bad["from"] + (bad["to"] - bad["from"]) / 2)
    assert (mid.stable_version, mid.canary_version, mid.canary_weight) == ("2", "5", 20)
    after = seeded.history.served_at(EP, bad["to"] + timedelta(minutes=1))
    assert (after.stable_version, after.canary_version) == ("2", None) and "aborted" in after.note
    current = history["endpoints"][EP]["canaries"][1]
    end = seeded.history.served_at(EP, NOW - timedelta(minutes=1))
    assert (end.canary_version, end.canary_weight) == (current["version"], current["weight"]) == ("4", 20)
    first = seeded.history.served_at(EP, NOW - timedelta(days=DAYS) + timedelta(minutes=1))
    assert (first.stable_version, first.canary_version) == ("2", None)
    assert seeded.history.served_at("diabetes-risk", NOW).canary_version is None


def test_the_drifting_feature_moves_after_its_start(seeded, history):
    from services.traffic import demo_rows

    drift = history["endpoints"][EP]["drift"]
    assert drift["feature"] == DRIFT
    since = datetime.fromisoformat(drift["from"])
    before = [r.features[DRIFT] for r in _all_rows(seeded, EP, end=since)]
    after = [r.features[DRIFT] for r in _all_rows(seeded, EP, start=since)]
    sd = demo_rows(EP)[2][DRIFT]
    shift = (statistics.fmean(after) - statistics.fmean(before)) / sd
    assert shift == pytest.approx(1.5, abs=0.3), shift  # +1.5 reference SDs, within sampling noise
    other = "mean radius"
    moved = (statistics.fmean(r.features[other] for r in _all_rows(seeded, EP, start=since))
             - statistics.fmean(r.features[other] for r in _all_rows(seeded, EP, end=since)))
    assert abs(moved) < 0.3 * demo_rows(EP)[2][other]


def test_labels_joined_for_most_rows_with_real_predictions(seeded, history):
    for ep in ("cancer-screening", "diabetes-risk"):
        rows = _all_rows(seeded, ep, end=NOW - timedelta(hours=6))  # old enough for the prompt labels
        ok = [r for r in rows if r.ok]
        labelled = [r for r in ok if r.label is not None]
        assert len(labelled) > 0.7 * len(ok), (ep, len(labelled), len(ok))
        assert all(r.labelled_at is not None and r.at < r.labelled_at <= NOW for r in labelled)
        assert all(r.label is None and r.prediction is None for r in rows if not r.ok)
        latest = _all_rows(seeded, ep, start=NOW - timedelta(minutes=5))
        assert all(r.label is None for r in latest), "labels from the future"
    stats = seeded.metrics.summary(EP, NOW - timedelta(days=DAYS), NOW)
    stable = next(s for s in stats if s.role == "stable")
    assert stable.labelled > 1000 and stable.accuracy > 0.85, stable  # v2's held-out accuracy is ~0.97
    reg = seeded.metrics.summary("diabetes-risk", NOW - timedelta(days=DAYS), NOW)[0]
    assert reg.mae is not None and 20 < reg.mae < 80, reg


def test_if_empty_a_second_time_writes_nothing(seeded, history, capsys):
    before = {ep: len(_all_rows(seeded, ep)) for ep in history["endpoints"]}
    changes = len(seeded.history.changes(EP))
    assert main(["seed-history", "--days", str(DAYS), "--now", NOW.isoformat(), "--if-empty"],
                container=seeded) == 0
    assert "skipped" in capsys.readouterr().out
    assert {ep: len(_all_rows(seeded, ep)) for ep in history["endpoints"]} == before
    assert len(seeded.history.changes(EP)) == changes


def test_histograms_kept_on_profiles_derived_from_training_data(seeded, history):
    """Each served version got its reference profile from its run's training frame on its first write; the
    hourly feature histograms count every logged row and their means show the drift."""
    drift = history["endpoints"][EP]["drift"]
    since = datetime.fromisoformat(drift["from"])
    rows = _all_rows(seeded, EP)
    served = {(r.model, r.version) for r in rows if r.version}
    for model, version in served:
        p = seeded.predictions.profile(model, version)
        assert p is not None and p.source.startswith("training data"), (model, version)
        assert DRIFT in p.columns and p.columns[DRIFT].kind == "numeric"
    cells = seeded.predictions.histograms(EP, NOW - timedelta(days=DAYS + 1), NOW + timedelta(hours=1))
    assert sum(sum(c.counts) for c in cells if c.feature == DRIFT) == len(rows)

    def mean(cs):
        return sum(c.total for c in cs) / sum(c.present for c in cs)

    before = [c for c in cells if c.feature == DRIFT and c.period < since.replace(minute=0)]
    after = [c for c in cells if c.feature == DRIFT and c.period > since]
    raw_before = statistics.fmean(r.features[DRIFT] for r in rows if r.at < since.replace(minute=0))
    assert mean(before) == pytest.approx(raw_before)  # the sums kept at ingest are the raw rows' sums
    from services.traffic import demo_rows

    assert (mean(after) - mean(before)) / demo_rows(EP)[2][DRIFT] == pytest.approx(1.5, abs=0.3)


def test_profile_command_shows_the_stored_bins_and_refuses_unknown_versions(seeded, history, capsys):
    (model, version) = next((r.model, r.version) for r in _all_rows(seeded, EP) if r.version)
    assert main(["profile", "--model", model, "--version", version, "--json"], container=seeded) == 0
    out = json.loads(capsys.readouterr().out)
    stored = seeded.predictions.profile(model, version)
    assert out["rows"] == stored.rows and [r["column"] for r in out["table"]][-1] == "prediction"
    assert {r["column"]: r["reference"] for r in out["table"]}[DRIFT] == list(stored.columns[DRIFT].reference)
    assert main(["profile", "--model", model, "--version", "999"], container=seeded) == 4
    assert "999" in capsys.readouterr().err
    assert main(["profile", "--model", model, "--version", "999", "--endpoint", EP], container=seeded) == 2
    assert "--from" in capsys.readouterr().err


def test_drift_command_over_logged_traffic_finds_the_drifting_feature(seeded, history, capsys):
    since = datetime.fromisoformat(history["endpoints"][EP]["drift"]["from"])
    args = ["drift", "--endpoint", EP, "--from", (since + timedelta(hours=1)).isoformat(), "--to", NOW.isoformat()]
    assert main([*args, "--json"], container=seeded) == 0
    rep = json.loads(capsys.readouterr().out)
    first = rep["columns"][0]
    assert (first["column"], first["method"], first["drifted"]) == (DRIFT, "psi", True)
    assert rep["drifted_columns"] < rep["computable_columns"] / 2 and rep["version"]
    perf = rep["performance"]  # the demo delivers labels: live accuracy beside the registered one
    assert perf["labelled"] > 100 and 0.5 < perf["accuracy"] <= 1 and perf["offline_accuracy"] is not None
    assert rep["label"]["method"] == "psi" and rep["label"]["current_rows"] == perf["labelled"]
    assert main([*args, "--method", "hellinger", "--columns", f"{DRIFT},mean radius"], container=seeded) == 0
    out = capsys.readouterr().out
    assert "hellinger" in out and DRIFT in out and "worst area" not in out
    before = ["drift", "--endpoint", EP, "--from", (since - timedelta(hours=12)).isoformat(), "--to",
              since.isoformat(), "--json"]
    assert main(before, container=seeded) == 0
    assert not any(c["drifted"] and c["column"] == DRIFT for c in json.loads(capsys.readouterr().out)["columns"])
    assert main([*args, "--method", "ks"], container=seeded) == 2
    assert "fixed bins" in capsys.readouterr().err
    assert main(["drift", "--endpoint", "nope", "--json"], container=seeded) == 4
    assert main([*args, "--reference", "a.csv", "--current", "b.csv"], container=seeded) == 2
    assert "not both" in capsys.readouterr().err


def test_drift_gates_read_the_real_explainer_and_the_histograms(seeded, history):
    """``attribution_shift`` of a version against the champion (real SHAP on both); ``drift_share`` is no live
    data here: the seeded history lies days before the live window."""
    model = seeded.serving.get_endpoint(EP).model
    champion = seeded.registry.aliases(model)["champion"]
    other = next(v.version for v in seeded.registry.list_versions(model) if v.version != champion)
    shift = seeded.live_metrics.current(EP, other, "attribution_shift")
    assert shift is not None and 0.0 < shift <= 1.0
    assert seeded.live_metrics.current(EP, champion, "attribution_shift") is None
    assert seeded.live_metrics.current(EP, champion, "drift_share") is None
    assert seeded.live_metrics.current(EP, champion, "requests") == 0.0, "other metrics: the metrics source's"


def test_a_regressor_s_answers_are_compared_with_its_own_answers_not_its_target(seeded, history):
    """diabetes-risk serves no drift: its answers (narrower than the target, as a ridge regression's are) must
    not read as prediction drift, which they would against the target's deciles."""
    ep = "diabetes-risk"
    version = seeded.serving.get_endpoint(ep).stable_version
    model = seeded.serving.get_endpoint(ep).model
    p = seeded.predictions.profile(model, version)
    assert "answers: v" in p.source and p.target is not None and p.target.edges == p.prediction.edges
    from services.drift.stats import psi
    from services.drift.windows import endpoint_drift

    v = endpoint_drift(seeded.predictions, seeded.policy.for_endpoint(ep).drift, ep, NOW - timedelta(days=DAYS),
                       NOW, version=version)
    assert v.prediction.drifted is False and v.prediction.statistic < v.prediction.threshold
    current = [round(share * v.prediction.current_rows) for share in v.distributions["prediction"].current]
    assert psi(p.target.reference, current) > 2 * v.prediction.statistic, "against the target it would drift"
    assert v.label is not None and v.performance["labelled"] > 100 and v.performance["rmse"] > 0


def test_the_bad_canary_left_an_alert_that_fired_and_resolved(seeded, history):
    """The story's aborted canary fails 15 % of its answers: the replayed evaluator fired canary-errors while it
    ran and resolved it once its traffic was gone; the Incidents timeline lists it after the canary's start."""
    windows = [(datetime.fromisoformat(str(w["from"])), datetime.fromisoformat(str(w["to"])))
               for w in history["endpoints"][EP]["canaries"]]
    start, end = next((s, e) for s, e in windows if e < NOW)
    assert history["alerts"]["fired"] >= 1 and history["alerts"]["resolved"] >= 1
    found = seeded.alerts.alerts(endpoint=EP, start=start - timedelta(hours=1), end=end + timedelta(hours=1))
    canary = [a for a in found if a.rule == "canary-errors-hourly"]
    assert canary and all(a.state == "resolved" for a in canary)
    first = min(canary, key=lambda a: a.started_at)
    assert start < first.started_at <= start + timedelta(hours=1)
    assert end <= max(a.resolved_at for a in canary) <= end + timedelta(minutes=70)
    events = seeded.incidents.timeline(EP, start - timedelta(minutes=30), end + timedelta(minutes=90))
    kinds = [e.kind for e in events]
    assert kinds.index("serving_change") < kinds.index("alert_fired") < kinds.index("alert_resolved")
