"""The demo seed against a real MLflow SQLite store with artifacts under tmp_path.

The seed runs once for the module (a few seconds); every test reads the store
through a fresh MlflowClient.
"""

from __future__ import annotations

import os
import re
import tempfile
from importlib import metadata
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.models import Model
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.model_selection import train_test_split

from services.demo import datasets, register, specs
from services.errors import Invalid, NotFound
from services.registry.mlflow_registry import load_reference_data

CLF, REG = specs.DEMO_MODELS
BC_FEATURES = list(load_breast_cancer().feature_names)
MEAN_FEATURES = [c for c in BC_FEATURES if c.startswith("mean ")]
RATIO = "worst to mean radius ratio"
SEED_BUDGET_SECONDS = 60.0

pytestmark = pytest.mark.slow  # one real seed (~5 s) plus model loads


def _sqlite_uri(path: Path) -> str:
    return f"sqlite:///{path}"


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """Seed once; record what the global MLflow state and the working directory looked like."""
    base = tmp_path_factory.mktemp("demo_seed")
    uri = _sqlite_uri(base / "mlflow.db")
    cwd = base / "cwd"
    cwd.mkdir()
    sentinel = _sqlite_uri(base / "someone-elses.db")
    lines: list[str] = []
    # Someone else's global tracking URI is in place while we seed (restored afterwards).
    with pytest.MonkeyPatch.context() as mp, register.mlflow_uri(sentinel):
        mp.chdir(cwd)
        empty_before = register.registry_is_empty(uri)
        summary = register.seed_registry(uri, base / "artifacts", progress=lines.append)
        after = {"tracking": mlflow.get_tracking_uri(), "registry": mlflow.get_registry_uri(),
                 "env": os.environ.get("MLFLOW_TRACKING_URI")}
    return {
        "uri": uri, "base": base, "cwd": cwd, "summary": summary, "lines": lines,
        "sentinel": sentinel, "after": after, "empty_before": empty_before,
        "client": mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri),
    }


def _versions(client, name):
    found = client.search_model_versions(filter_string=f"name = '{name}'")
    return sorted(found, key=lambda v: int(v.version))


def _version(seeded, name, version):
    return seeded["client"].get_model_version(name, version)


def _run(seeded, name, version):
    return seeded["client"].get_run(_version(seeded, name, version).run_id)


@pytest.fixture
def global_uri(seeded):
    """models:/ URIs resolve through the global tracking URI; point it at the store for one test."""
    with register.mlflow_uri(seeded["uri"]):
        yield seeded["uri"]


# --------------------------------------------------------------------------- summary, timing, hygiene


def test_summary_lists_versions_aliases_and_fits_the_time_budget(seeded):
    s = seeded["summary"]
    assert seeded["empty_before"] is True
    assert set(s["models"]) == set(specs.DEMO_MODELS)
    assert s["skipped"] == []
    assert s["models"][CLF]["versions"] == ["1", "2", "3", "4", "5"]
    assert s["models"][REG]["versions"] == ["1", "2", "3"]
    assert (s["models"][CLF]["champion"], s["models"][CLF]["challenger"]) == ("2", "4")
    assert (s["models"][REG]["champion"], s["models"][REG]["challenger"]) == ("2", "3")
    assert 0 < s["seconds"] < SEED_BUDGET_SECONDS, f"seed took {s['seconds']} s"
    print(f"\ndemo seed took {s['seconds']:.1f} s")
    assert any("v5" in line and "SGDClassifier" in line for line in seeded["lines"]), seeded["lines"]
    assert register.registry_is_empty(seeded["uri"]) is False


def test_seed_restores_global_tracking_uri_and_writes_nothing_to_cwd(seeded):
    assert seeded["after"]["tracking"] == seeded["sentinel"]
    assert seeded["after"]["registry"] == seeded["sentinel"]
    assert seeded["after"]["env"] == seeded["sentinel"]
    assert list(seeded["cwd"].iterdir()) == []
    assert (seeded["base"] / "artifacts" / CLF).is_dir()
    assert (seeded["base"] / "artifacts" / REG).is_dir()
    for name in specs.DEMO_MODELS:
        exp = seeded["client"].get_experiment_by_name(name)
        assert exp.artifact_location.startswith((seeded["base"] / "artifacts").as_uri())


# --------------------------------------------------------------------------- registry contents


def test_registered_models_have_description_tags_and_aliases(seeded):
    client = seeded["client"]
    for name, champion, challenger, task in ((CLF, "2", "4", "binary-classification"),
                                             (REG, "2", "3", "regression")):
        m = client.get_registered_model(name)
        assert len(m.description) > 50
        assert m.tags["team"] == "clinical-ml"
        assert m.tags["task"] == task
        assert {k: str(v) for k, v in m.aliases.items()} == {"champion": champion, "challenger": challenger}


def test_versions_carry_validation_algorithm_owner_tags_and_descriptions(seeded):
    client = seeded["client"]
    clf = _versions(client, CLF)
    statuses = {str(v.version): v.tags["validation_status"] for v in clf}
    assert statuses == {"1": "passed", "2": "passed", "3": "failed", "4": "passed", "5": "pending"}
    assert "roc_auc" in clf[2].tags["validation_notes"]  # the tree failed the AUC gate
    assert {v.tags["algorithm"] for v in clf} == {
        "LogisticRegression", "DecisionTreeClassifier", "GradientBoostingClassifier", "SGDClassifier"}
    reg = _versions(client, REG)
    assert [v.tags["validation_status"] for v in reg] == ["failed", "passed", "passed"]
    for v in clf + reg:
        assert v.tags["owner"] in {"alice", "bob", "carol", "dana"}
        assert len(v.description) > 20
        assert v.tags["source_commit"] == specs.fake_commit(v.name, v.tags[register.SEED_TAG])
    assert len({v.description for v in clf}) == len(clf)


def test_runs_log_params_metrics_commit_and_description(seeded):
    commits = set()
    for name, expected in ((CLF, {"accuracy", "f1", "roc_auc", "precision", "recall"}),
                           (REG, {"mae", "rmse", "r2"})):
        for v in seeded["summary"]["models"][name]["versions"]:
            run = _run(seeded, name, v)
            assert expected <= set(run.data.metrics), (name, v, run.data.metrics)
            assert run.data.params["algorithm"] == _version(seeded, name, v).tags["algorithm"]
            sha = run.data.tags["mlflow.source.git.commit"]
            assert re.fullmatch(r"[0-9a-f]{40}", sha)
            assert run.data.tags["source_commit"] == sha
            assert len(run.data.tags["mlflow.note.content"]) > 20
            commits.add(sha)
    assert len(commits) == 8  # deterministic but distinct per version
    champion = _run(seeded, CLF, "2").data.metrics
    assert 0.95 <= champion["accuracy"] <= 1.0 and champion["roc_auc"] > 0.98
    assert _run(seeded, REG, "2").data.metrics["r2"] > 0.45


def test_runs_log_training_and_evaluation_datasets(seeded):
    digests = {}
    for name in specs.DEMO_MODELS:
        for v in seeded["summary"]["models"][name]["versions"]:
            inputs = _run(seeded, name, v).inputs.dataset_inputs
            by_ctx = {}
            for di in inputs:
                ctx = [t.value for t in di.tags if t.key == "mlflow.data.context"]
                by_ctx[ctx[0]] = di.dataset
            assert set(by_ctx) == {"training", "evaluation"}, (name, v)
            assert '"target"' in by_ctx["training"].schema
            assert by_ctx["training"].digest != by_ctx["evaluation"].digest
            digests[(name, v)] = by_ctx["training"].digest
    assert '"mean radius"' in _run(seeded, CLF, "1").inputs.dataset_inputs[0].dataset.schema
    # Different feature sets mean different training data.
    assert digests[(CLF, "1")] == digests[(CLF, "2")]
    assert digests[(CLF, "1")] != digests[(CLF, "3")] != digests[(CLF, "4")]


def test_metric_history_for_step_wise_algorithms(seeded):
    client = seeded["client"]
    gbm = client.get_metric_history(_version(seeded, CLF, "4").run_id, "val_log_loss")
    assert [m.step for m in gbm] == list(range(1, 151))
    assert gbm[-1].value < gbm[0].value  # boosting reduces validation loss
    sgd = client.get_metric_history(_version(seeded, CLF, "5").run_id, "val_accuracy")
    assert [m.step for m in sgd] == list(range(1, 31))
    gbr = client.get_metric_history(_version(seeded, REG, "3").run_id, "val_rmse")
    assert len(gbr) == 120 and gbr[-1].value < gbr[0].value
    assert client.get_metric_history(_version(seeded, CLF, "1").run_id, "val_log_loss") == []


# --------------------------------------------------------------------------- model artifacts


def _model_dir(seeded, name, version) -> tuple[Model, str]:
    tmp = tempfile.mkdtemp(dir=seeded["base"])
    path = mlflow.artifacts.download_artifacts(
        seeded["client"].get_model_version_download_uri(name, version), dst_path=tmp,
        tracking_uri=seeded["uri"],
    )
    return Model.load(path), path


def test_signatures_differ_where_feature_sets_differ(seeded):
    inputs = {v: _model_dir(seeded, CLF, v)[0].signature.inputs.input_names() for v in ("1", "3", "4")}
    assert inputs["1"] == BC_FEATURES
    assert inputs["3"] == MEAN_FEATURES
    assert inputs["4"] == BC_FEATURES + [RATIO]
    reg = _model_dir(seeded, REG, "1")[0].signature.inputs.input_names()
    assert reg == list(load_diabetes().feature_names)


def test_requirements_are_pinned_and_one_version_differs(seeded):
    sk = f"scikit-learn=={metadata.version('scikit-learn')}"
    pa = f"pyarrow=={metadata.version('pyarrow')}"
    reqs = {}
    for name in specs.DEMO_MODELS:
        for v in seeded["summary"]["models"][name]["versions"]:
            _, path = _model_dir(seeded, name, v)
            reqs[(name, v)] = Path(path, "requirements.txt").read_text().split()
    for key, lines in reqs.items():
        assert sk in lines, key
        assert any(ln.startswith("numpy==") for ln in lines), key
        assert any(ln.startswith("pandas==") for ln in lines), key
    assert [key for key, lines in reqs.items() if pa in lines] == [(CLF, "4")]


def test_every_version_loads_and_predicts_on_its_input_example(seeded, global_uri):
    for name in specs.DEMO_MODELS:
        for v in seeded["summary"]["models"][name]["versions"]:
            meta, path = _model_dir(seeded, name, v)
            example = meta.load_input_example(path)
            assert isinstance(example, pd.DataFrame) and len(example) == 5
            model = mlflow.pyfunc.load_model(f"models:/{name}/{v}")
            pred = pd.Series(model.predict(example)).tolist()
            assert len(pred) == 5
            if name == CLF:
                assert set(pred) <= {0, 1}, (v, pred)
            else:
                assert all(0 < p < 400 for p in pred), (v, pred)
    # The tree ensembles need skops-trusted types; load them through the sklearn flavor too.
    gbm = mlflow.sklearn.load_model(f"models:/{CLF}@challenger")
    assert type(gbm).__name__ == "GradientBoostingClassifier"
    assert type(mlflow.sklearn.load_model(f"models:/{CLF}/3")).__name__ == "DecisionTreeClassifier"


# --------------------------------------------------------------------------- reference data


def test_load_reference_data_returns_the_exact_training_frame(seeded):
    bunch = load_breast_cancer(as_frame=True)
    x_tr, _, y_tr, _ = train_test_split(bunch.data, bunch.target, test_size=0.25,
                                        random_state=datasets.RANDOM_STATE, stratify=bunch.target)
    expected = x_tr.assign(target=y_tr.astype("int64")).reset_index(drop=True)
    got = load_reference_data(seeded["uri"], _version(seeded, CLF, "1").run_id)
    pd.testing.assert_frame_equal(got, expected)
    assert list(got.columns) == BC_FEATURES + ["target"]
    subset = load_reference_data(seeded["uri"], _version(seeded, CLF, "3").run_id)
    assert list(subset.columns) == MEAN_FEATURES + ["target"]
    ratio = load_reference_data(seeded["uri"], _version(seeded, CLF, "4").run_id)
    assert list(ratio.columns) == BC_FEATURES + [RATIO, "target"]
    reg = load_reference_data(seeded["uri"], _version(seeded, REG, "2").run_id)
    assert list(reg.columns) == list(load_diabetes().feature_names) + ["target"]
    assert len(reg) == 331


def test_load_reference_data_unknown_run_is_not_found(seeded):
    with pytest.raises(NotFound):
        load_reference_data(seeded["uri"], "0" * 32)
    with pytest.raises(Invalid):
        load_reference_data(seeded["uri"], "../etc")


# --------------------------------------------------------------------------- idempotency and refusals


def test_second_seed_changes_nothing(seeded):
    client = seeded["client"]
    before = {n: [(str(v.version), v.run_id) for v in _versions(client, n)] for n in specs.DEMO_MODELS}
    runs_before = len(client.search_runs([e.experiment_id for e in client.search_experiments()]))
    again = register.seed_registry(seeded["uri"], seeded["base"] / "artifacts")
    assert sorted(again["skipped"]) == sorted(specs.DEMO_MODELS)
    after = {n: [(str(v.version), v.run_id) for v in _versions(client, n)] for n in specs.DEMO_MODELS}
    assert after == before
    assert len(client.search_runs([e.experiment_id for e in client.search_experiments()])) == runs_before
    assert again["models"][CLF]["versions"] == seeded["summary"]["models"][CLF]["versions"]
    assert again["models"][CLF]["champion"] == "2"


def test_local_store_without_artifact_root_is_refused(tmp_path):
    db = tmp_path / "mlflow.db"
    with pytest.raises(Invalid):
        register.seed_registry(_sqlite_uri(db), None)
    assert not db.exists()


def test_foreign_model_with_a_demo_name_is_left_alone(tmp_path):
    uri = _sqlite_uri(tmp_path / "mlflow.db")
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model(CLF, description="someone else's model")
    client.create_model_version(CLF, source=(tmp_path / "elsewhere").as_uri())
    root = (tmp_path / "artifacts").as_uri()  # the app passes the artifact root as a file:// URI
    summary = register.seed_registry(uri, root)
    assert summary["skipped"] == [CLF]
    assert client.get_experiment_by_name(REG).artifact_location == f"{root}/{REG}"
    assert (tmp_path / "artifacts" / REG).is_dir()
    assert [str(v.version) for v in _versions(client, CLF)] == ["1"]
    assert client.get_registered_model(CLF).description == "someone else's model"
    assert summary["models"][REG]["versions"] == ["1", "2", "3"]


def test_registry_port_returns_reference_data(seeded):
    from services.errors import NotFound
    from services.registry.mlflow_registry import MlflowRegistry

    reg = MlflowRegistry(seeded["uri"])
    frame = reg.reference_data("breast-cancer-classifier", "2")
    assert "target" in frame.columns and len(frame) > 100
    ev = reg.reference_data("breast-cancer-classifier", "2", "eval")
    assert list(ev.columns) == list(frame.columns) and len(ev) < len(frame)
    with pytest.raises(NotFound):
        reg.reference_data("breast-cancer-classifier", "99")
