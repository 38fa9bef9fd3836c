"""Pure parts of the Models and Overview views: where versions serve, gate verdicts per version, the activity
feed, readable dataset sources, compare defaults and baselines, and the display formatters."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace

import pandas as pd
import pytest

from services.history import (
    ServingSlot,
    activity_feed,
    dataset_shape,
    dataset_source,
    default_compare,
    dependency_diff,
    gate_rule,
    gate_verdicts,
    metric_diff,
    pick_baseline,
    serving_slots,
    signature_diff,
    split_stated_gate,
    verdict_label,
)
from services.policy import OfflineGate
from services.registry import Signature, VersionSummary
from services.serving import Endpoint

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def vs(version: str, minute: int = 0, model: str = "m", **metrics) -> VersionSummary:
    return VersionSummary(model=model, version=version, created=T0.replace(minute=minute), metrics=metrics)


def audit(seq, ts, before, after, *, result="ok", action="rollback", actor="alice", target="ep", details=None):
    return SimpleNamespace(seq=seq, ts=ts, actor=actor, action=action, target=target, result=result,
                           before=before, after=after, details=details)


# -- serving -----------------------------------------------------------------------------------------------------
def test_serving_slots_per_version_with_role_and_weight():
    eps = [Endpoint("a", "m", "2", "4", 20), Endpoint("b", "m", "4"), Endpoint("c", "other", "2"),
           Endpoint("d", None, "2")]
    slots = serving_slots(eps, "m")
    assert [str(s) for s in slots["2"]] == ["a: stable 80%"]
    assert [str(s) for s in slots["4"]] == ["a: canary 20%", "b: stable 100%"]
    assert set(slots) == {"2", "4"}
    assert serving_slots(eps, "nothing") == {}
    assert ServingSlot("e", "canary", 5).endpoint == "e"


# -- gates -----------------------------------------------------------------------------------------------------------
GATES = (OfflineGate("auc", "higher", 0.05), OfflineGate("acc", "higher", 0.05, min_value=0.85),
         OfflineGate("rmse", "lower", 10.0))


def test_gate_rule_reads_like_the_policy():
    assert gate_rule(GATES[0]) == "auc ≥ champion − 0.05"
    assert gate_rule(GATES[1]) == "acc ≥ champion − 0.05 and ≥ 0.85"
    assert gate_rule(GATES[2]) == "rmse ≤ champion + 10"
    assert gate_rule(OfflineGate("f1")) == "f1 ≥ champion"


def test_gate_verdicts_per_version_against_the_champion():
    gates = GATES[:2]
    metrics = {"1": {"auc": 0.99, "acc": 0.97}, "2": {"auc": 0.99, "acc": 0.98},
               "3": {"auc": 0.93, "acc": 0.90}, "4": {"auc": 0.99}, "5": {"auc": 0.99, "acc": 0.84}}
    res = gate_verdicts(gates, metrics, "2")
    labels = {v: verdict_label(r, gates) for v, r in res.items()}
    assert labels == {"1": "pass", "2": "pass", "3": "FAIL: auc, acc", "4": "FAIL: acc", "5": "FAIL: acc"}
    assert res["3"][0].baseline == 0.99 and res["3"][0].threshold == pytest.approx(0.94)
    assert res["2"][0].baseline is None, "the champion is not compared with itself"
    # no champion (or an unknown one): only absolute limits count
    assert verdict_label(gate_verdicts(gates, metrics, None)["3"], gates) == "pass"
    assert verdict_label(gate_verdicts(gates, metrics, "9")["5"], gates) == "FAIL: acc"


def test_verdict_label_without_gates_and_without_gate_list():
    assert verdict_label([]) == "—"
    res = gate_verdicts((OfflineGate("auc"),), {"1": {"auc": 0.5}, "2": {"auc": 0.9}}, "2")
    assert verdict_label(res["1"]) == "FAIL: auc"


def test_stated_gate_lines_are_split_from_the_description():
    text, stated = split_stated_gate("Predicts things.\n\nQuality gate: accuracy >= 0.95 on held-out.\nMore.")
    assert stated == ["Quality gate: accuracy >= 0.95 on held-out."]
    assert "Quality gate" not in text and text.startswith("Predicts things.") and text.endswith("More.")
    assert split_stated_gate("") == ("", [])
    assert split_stated_gate("A gate: keep this")[1] == []


# -- activity -----------------------------------------------------------------------------------------------------
def test_activity_feed_merges_registrations_and_champion_moves_newest_first():
    versions = [vs("3", 30), vs("1", 10), vs("2", 20)]
    entries = [
        audit(5, "2026-01-01T12:25:00.000000Z", {"champion": "1"}, {"champion": "2"}, actor="bob", action="approve",
              details={"request_action": "request_promotion", "model": "m"}),
        audit(6, "2026-01-01T12:40:00.000000Z", {"champion": "2"}, {"champion": "1"}, target="screening"),
        audit(7, "2026-01-01T12:41:00.000000Z", {"champion": "1"}, {"champion": "1"}),  # weight change only
        audit(8, "2026-01-01T12:42:00.000000Z", {"champion": "1"}, {"champion": "3"}, result="refused"),
        audit(9, "2026-01-01T12:43:00.000000Z", None, None, result="ok"),
        audit(10, "2026-01-01T12:44:00.000000Z", {"champion": "1"}, {"champion": "3"}, result="requested"),
    ]
    feed = activity_feed(versions, entries, {"screening": "m"})
    assert [(a.kind, a.version) for a in feed] == [("alias", "1"), ("registered", "3"), ("alias", "2"),
                                                   ("registered", "2"), ("registered", "1")]
    move = feed[0]
    assert move.text == "@champion v2 → v1, by alice" and move.model == "m" and move.endpoint == "screening"
    assert move.when == T0.replace(minute=40) and move.action == "rollback"
    approved = feed[2]
    assert approved.text == "@champion v1 → v2, by bob" and approved.action == "request promotion, approved"
    assert feed[1].text == "registered" and feed[1].model == "m"
    assert len(activity_feed(versions, entries, limit=2)) == 2


def test_activity_feed_first_champion_and_undated_entries():
    feed = activity_feed([VersionSummary("m", "1")], [audit(1, "garbage", {"champion": None}, {"champion": "1"})])
    assert sorted(a.text for a in feed) == ["@champion (none) → v1, by alice", "registered"]
    assert all(a.when is None for a in feed) and next(a for a in feed if a.kind == "alias").model is None
    assert activity_feed([], []) == []


# -- lineage ------------------------------------------------------------------------------------------------------
def test_dataset_source_as_text():
    assert dataset_source("local", json.dumps({"uri": "file:///data/train.parquet"})) == "file:///data/train.parquet"
    assert dataset_source("s3", '{"path": "s3://b/k"}') == "s3://b/k"
    assert dataset_source("code", json.dumps({"tags": {"loader": "sk", "split": "train"}})) == \
        "loader=sk, split=train"
    assert dataset_source("x", "not json") == "not json"
    assert dataset_source("x", "") == "" and dataset_source("x", "[1]") == "[1]"
    assert dataset_source("x", '{"a": 1}') == "a=1"


def test_dataset_shape():
    schema = json.dumps({"mlflow_colspec": [{"name": "a"}, {"name": "b"}]})
    assert dataset_shape(schema, json.dumps({"num_rows": 1426})) == "1,426 rows × 2 columns"
    assert dataset_shape("", "") == "" and dataset_shape("junk", "{}") == ""


# -- compare -------------------------------------------------------------------------------------------------------
def test_default_compare_is_the_champion_and_the_newest():
    versions = [vs("1"), vs("10"), vs("2"), vs("9")]
    assert default_compare(versions, "2") == ["2", "10"]
    assert default_compare(versions, "10") == ["10", "9"]
    assert default_compare(versions, None) == ["10", "9"]
    assert default_compare(versions, "77") == ["10", "9"]
    assert default_compare([vs("1")], "1") == ["1"]


def test_pick_baseline():
    assert pick_baseline(["2", "4"], "4") == "4"
    assert pick_baseline(["2", "4"], "v4") == "4"
    assert pick_baseline(["2", "4"], "9") == "2"
    assert pick_baseline(["2", "4"], None) == "2"
    assert pick_baseline([], "1") is None


def test_diffs_take_a_baseline():
    rows = metric_diff({"1": {"acc": 0.9, "loss": 0.3}, "2": {"acc": 0.95, "loss": 0.2}}, baseline="2")
    acc = next(r for r in rows if r["metric"] == "acc")
    assert acc["deltas"] == {"1": pytest.approx(-0.05), "2": None} and acc["better"] == {"1": False, "2": None}
    loss = next(r for r in rows if r["metric"] == "loss")
    assert loss["better"]["1"] is False
    sig = signature_diff({"1": Signature(inputs=(("a", "double"),)), "2": Signature(inputs=(("a", "double"),
                                                                                          ("b", "long")))},
                         baseline="2")
    assert {r["column"]: r["status"] for r in sig} == {"a": "same", "b": "removed"}
    deps = dependency_diff({"1": ["x==1"], "2": ["x==1", "y==2"]}, baseline="2")
    assert {r["package"]: r["status"] for r in deps} == {"x": "same", "y": "removed"}
    assert metric_diff({"1": {"acc": 1.0}, "2": {"acc": 2.0}})[0]["deltas"]["2"] == 1.0  # default: the first


# -- display formatters (dashboard.components) ---------------------------------------------------------------------
def test_fmt_time_one_format_everywhere():
    from dashboard.components import fmt_time

    assert fmt_time(T0) == "2026-01-01 12:00 UTC"
    assert fmt_time(datetime(2026, 1, 1, 12, 0)) == "2026-01-01 12:00 UTC"  # naive means UTC
    assert fmt_time(pd.Timestamp("2026-01-01 14:00", tz="Europe/Berlin")) == "2026-01-01 13:00 UTC"
    assert fmt_time("2026-01-01T12:00:00.000000Z") == "2026-01-01 12:00 UTC"
    assert fmt_time(None) == fmt_time(pd.NaT) == fmt_time(float("nan")) == "—"


def test_clean_frame_leaves_no_none_or_nan():
    from dashboard.components import clean_frame, fmt_missing, fmt_num

    df = pd.DataFrame({"s": ["a", None], "f": [0.5, float("nan")], "full": [0.25, 0.5], "i": [1, None],
                       "t": [pd.Timestamp(T0), pd.NaT], "o": [T0, None]})
    out = clean_frame(df)
    assert list(out["s"]) == ["a", "—"] and list(out["f"]) == ["0.5000", "—"] and list(out["i"]) == ["1", "—"]
    assert list(out["t"]) == ["2026-01-01 12:00 UTC", "—"] and list(out["o"]) == ["2026-01-01 12:00 UTC", "—"]
    assert out["full"].dtype.kind == "f", "complete numeric columns stay numbers"
    assert not out.isna().any().any()
    assert fmt_missing(None) == fmt_missing(" ") == "—" and fmt_missing(0) == 0
    assert fmt_num(float("nan")) == "—" and fmt_num(0.123456, 3) == "0.123" and fmt_num(3) == "3"
