import pytest

from services.actions.catalog import VOCABULARY
from services.errors import Invalid
from services.history import dependency_diff, metric_diff, metric_direction, param_diff, signature_diff
from services.policy import LiveGate, OfflineGate, Policy, evaluate_live, evaluate_offline
from services.registry import Signature
from services.settings import REPO_ROOT


def test_offline_gates_higher_and_lower():
    gates = (OfflineGate("auc", "higher", 0.02), OfflineGate("rmse", "lower", 1.0, min_value=60))
    ok = evaluate_offline(gates, {"auc": 0.89, "rmse": 55.5}, {"auc": 0.90, "rmse": 55.0})
    assert [g.passed for g in ok] == [True, True]
    assert ok[0].threshold == pytest.approx(0.88) and ok[1].threshold == pytest.approx(56.0)
    bad = evaluate_offline(gates, {"auc": 0.85, "rmse": 61.0}, {"auc": 0.90, "rmse": 55.0})
    assert [g.passed for g in bad] == [False, False]
    assert "ceiling" in bad[1].detail and "champion" in bad[0].detail
    missing = evaluate_offline(gates, {}, None)
    assert [g.passed for g in missing] == [False, False]
    first = evaluate_offline((OfflineGate("auc"),), {"auc": 0.5}, None)
    assert first[0].passed and "no champion" in first[0].detail


def test_live_gates():
    res = evaluate_live((LiveGate("error_rate", 0.05), LiveGate("drift", 0.2, on_missing="pass")),
                        {"error_rate": 0.07})
    assert [r.passed for r in res] == [False, True]


def test_policy_file_of_the_demo_loads_and_overrides_defaults():
    p = Policy.load(REPO_ROOT / "deploy" / "policy.yaml", VOCABULARY)
    ep = p.for_endpoint("cancer-screening")
    assert ep.needs_approval("promote") and not ep.needs_approval("rollback")
    assert [g.metric for g in ep.offline_gates] == ["roc_auc", "accuracy"]
    assert p.for_endpoint("unknown").offline_gates == ()
    assert ep.roles_for("approve") == ("approver",)


@pytest.mark.parametrize("bad", [
    {"defaults": {"require_approval": ["teleport"]}},
    {"defaults": {"roles": {"fly": ["x"]}}},
    {"defaults": {"gates": {"offline": [{"direction": "higher"}]}}},
    {"defaults": {"gates": {"offline": [{"metric": "a", "direction": "sideways"}]}}},
    {"defaults": {"gate_actions": ["teleport"]}},
    {"defaults": {"gates": {"live": [{"metric": "error_rate", "max_value": 0.1, "applies_to": ["fly"]}]}}},
    {"defaults": {"gates": {"live": [{"metric": "error_rate", "max_value": 0.1, "on_missing": "maybe"}]}}},
    [1, 2],
])
def test_bad_policy_is_refused(bad):
    with pytest.raises(Invalid):
        Policy.from_dict(bad, VOCABULARY)


def test_metric_direction():
    assert metric_direction("val_loss") == "lower" and metric_direction("rmse") == "lower"
    assert metric_direction("roc_auc") == "higher" and metric_direction("r2") == "higher"


def test_metric_diff_colours_by_direction():
    rows = {r["metric"]: r for r in metric_diff({"1": {"auc": 0.9, "rmse": 50.0}, "2": {"auc": 0.95, "rmse": 55.0},
                                                  "3": {"auc": 0.9}})}
    assert rows["auc"]["deltas"]["2"] == pytest.approx(0.05) and rows["auc"]["better"]["2"] is True
    assert rows["rmse"]["better"]["2"] is False and rows["rmse"]["deltas"]["3"] is None
    assert rows["auc"]["better"]["3"] is None  # equal is neither


def test_param_diff_differences_only():
    rows = param_diff({"1": {"C": "1", "solver": "lbfgs"}, "2": {"C": "10", "solver": "lbfgs"}}, True)
    assert rows == [{"key": "C", "1": "1", "2": "10", "differs": True}]
    assert len(param_diff({"1": {"a": "x"}, "2": {"b": "y"}})) == 2


def test_signature_diff():
    a = Signature(inputs=(("x", "double"), ("y", "long")), outputs=(("p", "long"),))
    b = Signature(inputs=(("x", "double"), ("y", "double"), ("z", "double")), outputs=(("p", "long"),))
    rows = {(r["section"], r["column"]): r["status"] for r in signature_diff({"1": a, "2": b})}
    assert rows == {("inputs", "x"): "same", ("inputs", "y"): "type changed", ("inputs", "z"): "added",
                    ("outputs", "p"): "same"}
    rows = {r["column"]: r["status"] for r in signature_diff({"2": b, "1": a})}
    assert rows["z"] == "removed"


def test_dependency_diff():
    rows = {r["package"]: r["status"] for r in dependency_diff({
        "1": ["scikit-learn==1.9.1", "pandas==3.1.1", "shap==0.50"],
        "2": ["scikit_learn==1.9.1", "pandas==3.2.0", "scipy==1.17.1"]})}
    assert rows == {"scikit-learn": "same", "pandas": "changed", "shap": "removed", "scipy": "added"}


def test_live_gates_say_which_actions_they_gate():
    p = Policy.from_dict({"defaults": {"gates": {"live": [
        {"metric": "error_rate", "max_value": 0.05},
        {"metric": "p95_latency_ms", "max_value": 300, "applies_to": ["start_canary", "promote_canary"]}]}}},
        VOCABULARY)
    default, explicit = p.defaults.live_gates
    assert default.applies_to == ("promote_canary", "request_promotion"), "not starting a canary: no data yet"
    assert explicit.applies_to == ("start_canary", "promote_canary")


def test_roles_come_from_the_catalog_unless_the_policy_sets_them():
    p = Policy.from_dict({"defaults": {"roles": {"rollback": ["operator", "requester"]}}}, VOCABULARY)
    assert p.defaults.roles_for("rollback") == ("operator", "requester")
    assert p.defaults.roles_for("approve") == ("approver",)
    assert set(p.defaults.roles) == set(VOCABULARY.actions)
