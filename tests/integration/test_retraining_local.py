"""The local retrainer on a real MLflow store and a real console database, through the command line: a version
that logged its training and held-out frames (as the demo's do) is retrained on them plus the endpoint's
labelled prediction-log window, and the result lands as ``challenger`` with its lineage and a holdout comparison
against the champion; the attempt is in the audit trail."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from services.cli import main
from services.errors import PreconditionFailed
from services.predictions import PredictionRow
from tests.conftest import ENDPOINT, MODEL, fresh_registry, make_container

NAME = "retrain clf"
COLS = ["mean radius", "mean texture"]


def _register_with_data(uri: str, tmp_path) -> tuple:
    """v1 of NAME: a logistic regression that logged reference/train.parquet and reference/eval.parquet."""
    import mlflow
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    from services.demo.register import mlflow_uri

    rng = np.random.default_rng(7)
    x = pd.DataFrame(rng.normal(size=(120, 2)), columns=COLS)
    y = (x["mean radius"] + 0.3 * x["mean texture"] > 0).astype("int64")
    train, holdout = x.iloc[:80].assign(target=y.iloc[:80]), x.iloc[80:].assign(target=y.iloc[80:])
    model = LogisticRegression(C=0.05).fit(train[COLS], train["target"])
    with mlflow_uri(uri):
        client = mlflow.MlflowClient(uri, uri)
        exp = client.create_experiment("retrain-tests", artifact_location=(tmp_path / "art").as_uri())
        client.create_registered_model(NAME)
        with mlflow.start_run(experiment_id=exp) as run:
            for frame, name in ((train, "train"), (holdout, "eval")):
                path = tmp_path / f"{name}.parquet"
                frame.to_parquet(path, index=False)
                mlflow.log_artifact(str(path), artifact_path="reference")
            info = mlflow.sklearn.log_model(model, name="model",
                                            signature=infer_signature(train[COLS], model.predict(train[COLS])))
        client.create_model_version(NAME, info.model_uri, run_id=run.info.run_id)
        client.set_registered_model_alias(NAME, "champion", "1")
    return train, holdout


def test_the_local_job_retrains_on_training_data_plus_the_labelled_window(registry_template, tmp_path, clock,
                                                                          capsys):
    import mlflow
    import numpy as np

    uri = fresh_registry(registry_template, tmp_path / "reg")
    train, holdout = _register_with_data(uri, tmp_path)
    c = make_container(uri, f"sqlite:///{tmp_path / 'console.db'}", tmp_path, clock=clock)
    c.serving.ensure_endpoint("clf-ep", NAME, "1")
    now = clock()
    rng = np.random.default_rng(11)
    rows = []
    for i in range(40):  # the window: 30 labelled, 5 unlabelled, 5 failed; and 5 labelled rows before it
        at = now - timedelta(hours=1, minutes=i) if i < 35 or i >= 40 else now - timedelta(minutes=5)
        feats = {c_: float(v) for c_, v in zip(COLS, rng.normal(size=2), strict=True)}
        rows.append(PredictionRow(f"w{i}", 0, "clf-ep", at, "1", "stable", NAME, feats, prediction=1, latency_ms=3.0,
                                  status=500 if 35 <= i < 40 else 200, error="boom" if 35 <= i < 40 else ""))
    for i in range(5):
        rows.append(PredictionRow(f"old{i}", 0, "clf-ep", now - timedelta(days=3), "1", "stable", NAME,
                                  {"mean radius": 1.0, "mean texture": 0.0}, prediction=1))
    for i in range(3):  # served rows that are holdout rows (the demo replays its held-out rows): not trained on
        feats = {c_: float(holdout[c_].iloc[i]) for c_ in COLS}
        rows.append(PredictionRow(f"h{i}", 0, "clf-ep", now - timedelta(minutes=30), "1", "stable", NAME, feats,
                                  prediction=1))
    c.predictions.write(rows)
    labels = [(f"w{i}", 0, int(rows[i].features["mean texture"] > 0)) for i in range(30)]  # the concept moved
    labels += [(f"w{i}", 0, 1) for i in range(35, 40)] + [(f"old{i}", 0, 0) for i in range(5)]
    labels += [(f"h{i}", 0, int(holdout["target"].iloc[i])) for i in range(3)]
    c.predictions.add_labels(labels)

    code = main(["retrain", "--endpoint", "clf-ep", "--from=-2h", "--to", "now", "--reason", "live accuracy fell",
                 "--evidence", '{"alert": "quality-low"}', "--as", "alice", "--json", "--request-promotion"],
                container=c)
    assert code == 0
    promotion = json.loads(capsys.readouterr().out)["promotion"]
    assert promotion["status"] == "pending_approval"
    (filed,) = c.approvals.list(status="pending", endpoint="clf-ep")
    assert (filed.id, filed.params["version"], filed.requester) == (promotion["request_id"], "2", "alice")

    versions = {v.version: v for v in c.registry.list_versions(NAME)}
    assert set(versions) == {"1", "2"}
    new = versions["2"]
    assert new.tags["mlops.candidate"] == "retraining" and new.tags["mlops.parent_version"] == "1"
    assert new.tags["mlops.retrain.window_from"] == (now - timedelta(hours=2)).isoformat()
    assert new.tags["mlops.retrain.window_to"] == now.isoformat()
    assert new.tags["mlops.retrain.trigger"] == "alice" and new.tags["mlops.retrain.reason"] == "live accuracy fell"
    assert c.registry.aliases(NAME) == {"champion": "1", "challenger": "2"}

    client = mlflow.MlflowClient(uri)
    run = client.get_run(new.run_id)
    assert run.data.params["train_rows"] == str(len(train) + 30)  # 30 labelled, successful rows in the window
    assert run.data.metrics["window_used"] == 30 and run.data.metrics["window_labelled"] == 33
    assert run.data.metrics["window_in_holdout"] == 3
    assert run.data.tags["mlops.parent_version"] == "1" and run.data.tags["mlops.retrain.trigger"] == "alice"
    inputs = {(d.dataset.name, [t.value for t in d.tags if t.key == "mlflow.data.context"][0]): d.dataset.digest
              for d in run.inputs.dataset_inputs}
    assert set(inputs) == {("original training data of v1", "training"), ("holdout of v1", "evaluation"),
                           (f"clf-ep labelled predictions, window {(now - timedelta(hours=2)).isoformat()}.."
                            f"{now.isoformat()}", "training")}
    assert all(inputs.values()) and run.data.tags["mlops.retrain.digest.window"] in inputs.values()

    # candidate and champion on the same holdout, computed independently from the registered models
    def accuracy(version: str) -> float:
        from services.demo.register import mlflow_uri

        with mlflow_uri(uri):
            m = mlflow.pyfunc.load_model(f"models:/{NAME}/{version}")
        return float((np.asarray(m.predict(holdout[COLS])) == holdout["target"].to_numpy()).mean())

    assert run.data.metrics["holdout_accuracy"] == pytest.approx(accuracy("2"))
    assert run.data.metrics["champion_holdout_accuracy"] == pytest.approx(accuracy("1"))
    assert run.data.metrics["accuracy"] == run.data.metrics["holdout_accuracy"]  # what the promotion gates read
    assert c.registry.reference_data(NAME, "2").shape == (len(train) + 30, 3)  # drift and explanations work

    entry = c.audit.entries(limit=1, action="retrain")[0]
    assert (entry.actor, entry.result, entry.target, entry.reason) == ("alice", "ok", "clf-ep", "live accuracy fell")
    assert entry.after == {"run_id": new.run_id, "state": "succeeded", "new_version": "2"}
    assert entry.details["evidence"]["alert"] == "quality-low"
    assert entry.details["metrics"]["champion_holdout_accuracy"] == pytest.approx(accuracy("1"))

    status = c.retrainer.status(new.run_id)
    assert (status.state, status.new_version, status.request.version, status.request.model) == (
        "succeeded", "2", "1", NAME)
    c.engine.dispose()


def test_a_version_without_logged_training_data_is_refused_and_audited(registry_template, tmp_path, clock, capsys):
    uri = fresh_registry(registry_template, tmp_path / "reg")
    c = make_container(uri, f"sqlite:///{tmp_path / 'console.db'}", tmp_path, clock=clock)
    c.serving.ensure_endpoint(ENDPOINT, MODEL, "1")
    assert main(["retrain", "--endpoint", ENDPOINT, "--reason", "try", "--as", "alice"], container=c) == \
        PreconditionFailed.exit_code
    assert "logged no training data" in capsys.readouterr().err
    assert {v.version for v in c.registry.list_versions(MODEL)} == {"1", "2", "3", "4"}
    assert c.audit.entries(limit=1)[0].result == "refused"
    assert main(["retrain", "--endpoint", ENDPOINT, "--reason", "try", "--as", "carol", "--json"], container=c) == 7
    assert json.loads(capsys.readouterr().out)["error"] == "permission_denied"
    assert c.audit.entries(limit=1)[0].actor == "carol"
    c.engine.dispose()


def test_a_rule_on_live_quality_retrains_once_then_waits_its_cool_down(registry_template, tmp_path, clock, capsys):
    """The loop from evidence to a challenger: labels say the stable version is wrong, the policy's rule fires,
    the local job registers a challenger with the rule as its trigger; the next check is held by the cool-down."""
    import numpy as np

    uri = fresh_registry(registry_template, tmp_path / "reg")
    _register_with_data(uri, tmp_path)
    policy = tmp_path / "policy.yaml"
    policy.write_text("defaults: {}\nretraining:\n  defaults:\n    - {name: quality-low, metric: accuracy, below: 0.8, "
                      "window_minutes: 120, min_labelled: 20, cooldown_minutes: 60, request_promotion: true}\n")
    c = make_container(uri, f"sqlite:///{tmp_path / 'console.db'}", tmp_path, clock=clock,
                       MLOPS_POLICY_FILE=str(policy))
    c.serving.ensure_endpoint("clf-ep", NAME, "1")
    rng = np.random.default_rng(5)
    rows = [PredictionRow(f"q{i}", 0, "clf-ep", clock() - timedelta(minutes=i + 1), "1", "stable", NAME,
                          dict(zip(COLS, map(float, rng.normal(size=2)), strict=True)), prediction=1)
            for i in range(40)]
    c.predictions.write(rows)
    c.predictions.add_labels([(f"q{i}", 0, 0 if i < 20 else 1) for i in range(40)])  # live accuracy 0.5

    assert main(["retrain-check", "--dry-run", "--json"], container=c) == 0
    (dry,) = json.loads(capsys.readouterr().out)
    assert (dry["endpoint"], dry["outcome"], dry["value"]) == ("clf-ep", "would fire", 0.5)
    assert {v.version for v in c.registry.list_versions(NAME)} == {"1"}

    assert main(["retrain-check", "--endpoint", "clf-ep", "--json"], container=c) == 0
    (fired,) = json.loads(capsys.readouterr().out)
    assert fired["outcome"] == "fired" and fired["run_id"]
    assert "promotion of v2: pending_approval" in fired["note"]
    (filed,) = c.approvals.list(status="pending", endpoint="clf-ep")  # for a person to approve
    assert (filed.action, filed.params["version"], filed.requester) == ("request_promotion", "2", "rule:quality-low")
    new = c.registry.get_version(NAME, "2")
    assert new.tags["mlops.retrain.trigger"] == "rule:quality-low" and new.tags["mlops.parent_version"] == "1"
    assert new.tags["mlops.retrain.reason"].startswith("rule quality-low: accuracy 0.5 < 0.8")
    assert c.registry.aliases(NAME)["challenger"] == "2"
    entry = c.audit.entries(limit=1, action="retrain")[0]
    assert (entry.actor, entry.result, entry.after["new_version"]) == ("rule:quality-low", "ok", "2")
    assert entry.details["evidence"]["value"] == 0.5

    clock.advance(minutes=30)
    assert main(["retrain-check", "--json"], container=c) == 0
    (held,) = json.loads(capsys.readouterr().out)
    assert held["outcome"] == "skipped" and "60-minute cool-down" in held["note"]
    assert {v.version for v in c.registry.list_versions(NAME)} == {"1", "2"}
    c.engine.dispose()
