"""The read use cases (what serves where, model history, input compatibility) against in-memory fakes."""

from __future__ import annotations

import pytest

from services import compat, deployments, history
from services.errors import Invalid, NotFound, Unavailable
from tests.fakes import FakeRegistry, FakeServing

M = "cls"


@pytest.fixture
def reg():
    r = FakeRegistry()
    r.add(M, "1", metrics={"accuracy": 0.9})
    r.add(M, "2", metrics={"accuracy": 0.93}, inputs=(("x", "double"), ("ratio", "double")))
    r.add("other", "1")
    r.alias_map[M]["champion"] = "1"
    return r


def test_serving_overview_and_agreement(reg):
    serving = FakeServing()
    serving.add("a", M, "1")
    serving.add("b", M, "2", "1", 10)
    views = {v.endpoint.name: v for v in deployments.serving_overview(serving, reg)}
    assert views["a"].agrees and views["a"].champion == "1"
    assert not views["b"].agrees and "champion of cls is v1" in views["b"].warnings[0]
    reg.fail["get_model"] = Unavailable("down", source="fake registry")
    views = deployments.serving_overview(serving, reg)
    assert all("could not read the registry" in v.warnings[0] for v in views), "a registry outage is a warning"


def test_endpoint_view_warns_while_a_canary_lacks_the_clients_inputs(reg):
    serving = FakeServing()
    serving.add("e", M, "1", "2", 20)
    view = deployments.endpoint_view(serving, reg, "e")
    assert view.input_warnings == ["Canary v2 needs input columns that clients of v1 do not send: ratio (double); "
                                   "requests routed to it will fail"]
    serving.add("f", M, "2", "1", 20)
    assert "ignores input columns v2 reads: ratio" in deployments.endpoint_view(serving, reg, "f").input_warnings[0]
    with pytest.raises(NotFound):
        deployments.endpoint_view(serving, reg, "nope")


def test_input_warnings_never_raise(reg):
    reg.fail["get_version_detail"] = Unavailable("down", source="fake registry")
    (w,) = compat.input_warnings(reg, M, "1", "2", "Canary")
    assert "could not compare the input signatures of v1 and v2" in w
    assert compat.input_warnings(reg, M, None, "2", "Canary") == []


def test_model_history_use_cases(reg):
    assert [m.name for m in history.list_models(reg, "CL")] == [M]
    view = history.model_view(reg, M)
    assert view.champion == "1" and [v.version for v in view.versions] == ["2", "1"]
    cmp = history.compare_versions(reg, M, ["1", "2"])
    rows = {r["metric"]: r for r in cmp.metrics()}
    assert rows["accuracy"]["deltas"]["2"] == pytest.approx(0.03) and rows["accuracy"]["better"]["2"] is True
    assert [r["column"] for r in cmp.signature() if r["status"] == "added"] == ["ratio"]
    with pytest.raises(NotFound, match="has no version 9"):
        history.compare_versions(reg, M, ["1", "9"])
    with pytest.raises(Invalid):
        history.compare_versions(reg, M, ["1"])
    assert [v.model for v in history.recent_activity(reg, 2)] == [M, M]
