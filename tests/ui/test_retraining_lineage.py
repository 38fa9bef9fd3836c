"""The registry page of a retrained version shows its lineage (parent, window, trigger, reason) and the holdout
comparison against the champion, with a link to compare them; other versions show none of it."""

from __future__ import annotations

from services.retraining import RetrainRequest
from tests.ui.conftest import texts

CLS = "breast-cancer-classifier"


def test_a_retrained_version_shows_its_lineage_and_the_holdout_comparison(app, private_demo):
    c = private_demo()
    run = c.retrainer.trigger(RetrainRequest(endpoint="cancer-screening", model=CLS, version="2",
                                             reason="labels say it slipped", trigger="alice"))
    assert run.new_version == "6"
    at = app("models.py", model=CLS, version="6")
    assert not at.exception
    shown = texts(at)
    assert "Retraining lineage" in shown and "**Trigger:** alice" in shown
    assert "**Reason:** labels say it slipped" in shown and "none (original data only)" in shown
    links = {p.label: p for p in at.get("page_link")}
    assert "Retrained from v2" in links and "Compare v6 with the champion v2" in links
    (comparison,) = [d.value for d in at.dataframe if "v6 (candidate)" in d.value.columns]
    rows = comparison.set_index("metric")
    assert rows.loc["accuracy", "v6 (candidate)"] == run.metrics["holdout_accuracy"]
    assert rows.loc["accuracy", "v2 (champion)"] == run.metrics["champion_holdout_accuracy"]
    assert set(rows["better"]) <= {"candidate", "champion", "equal"}
    at = app("models.py", model=CLS, version="2")
    assert "Retraining lineage" not in texts(at)
