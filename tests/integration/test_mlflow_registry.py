"""The MLflow adapter against a real MLflow store (SQLite) and a real `mlflow server`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request

import pytest

from services import history
from services.errors import Invalid, NotFound, Unavailable
from services.registry.mlflow_registry import MlflowRegistry
from tests.conftest import MODEL, free_port, fresh_registry
from tests.processes import stop_process

TRICKY = ["a'b", 'say "hi"', "both ' and \"", "50%_off", "50X_off", "ünï côde 🚀", "spaces  in name"]


@pytest.fixture
def reg(registry_template, tmp_path):
    return MlflowRegistry(fresh_registry(registry_template, tmp_path / "r"))


def test_models_list_with_counts_aliases_and_search(reg):
    models = {m.name: m for m in history.list_models(reg)}
    assert set(models) == {MODEL, "other"}
    m = models[MODEL]
    assert m.version_count == 4 and m.latest_version == "4"
    assert m.aliases == {"champion": "1", "challenger": "2"} and m.tags == {"team": "qa"}
    assert [x.name for x in history.list_models(reg, "CLS")] == [MODEL]
    assert history.list_models(reg, "%") == [] or all("%" in x.name for x in history.list_models(reg, "%"))


def test_versions_have_aliases_and_run_metrics(reg):
    versions = reg.list_versions(MODEL)
    assert [v.version for v in versions] == ["4", "3", "2", "1"]
    by = {v.version: v for v in versions}
    assert by["1"].aliases == ("champion",) and by["2"].aliases == ("challenger",)
    assert by["2"].metrics["accuracy"] == pytest.approx(0.93)
    assert by["4"].run_id is None and by["4"].metrics == {}
    assert by["1"].tags["validation_status"] == "passed"


def test_version_detail_reads_signature_requirements_lineage(reg):
    d = reg.get_version_detail(MODEL, "3")
    assert [c for c, _ in d.signature.inputs] == ["mean radius", "mean texture", "ratio"]
    assert "scikit-learn==1.9.1" in d.requirements
    assert d.source_commit == f"{10000:040x}"
    assert d.artifact_location.startswith("file://") and "sklearn" in d.flavors
    assert d.run.params["C"] == "10.0" and not d.load_warnings
    hist = reg.metric_history(d.run.run_id, "val_loss")
    assert [p.step for p in hist] == [0, 1, 2] and hist[0].value > hist[2].value
    broken = reg.get_version_detail(MODEL, "4")
    assert broken.load_warnings and broken.signature is None


def test_compare_versions(reg):
    cmp = history.compare_versions(reg, MODEL, ["1", "2", "3"])
    params = {r["key"]: r for r in cmp.params(differences_only=True)}
    assert params["C"]["1"] == "0.1" and params["C"]["3"] == "10.0"
    deps = {r["package"]: r["status"] for r in cmp.dependencies()}
    assert deps["scipy"] == "added"
    sig = {r["column"]: r["status"] for r in cmp.signature()}
    assert sig["ratio"] == "added" and sig["mean radius"] == "same"
    metrics = {r["metric"]: r for r in cmp.metrics()}
    assert metrics["accuracy"]["better"]["2"] is True and metrics["accuracy"]["better"]["3"] is False
    with pytest.raises(NotFound, match="no version 9"):
        history.compare_versions(reg, MODEL, ["1", "9"])


def test_unknown_and_bad_names(reg):
    with pytest.raises(NotFound, match="does not exist"):
        reg.get_model("nope")
    with pytest.raises(NotFound):
        reg.get_version(MODEL, "99")
    with pytest.raises(Invalid):
        reg.get_version(MODEL, "1 OR 1=1")
    with pytest.raises(Invalid):
        reg.get_model("   ")


def test_tricky_names_work_and_never_widen_a_search(reg):
    c = reg.client
    for name in TRICKY:
        c.create_registered_model(name)
        c.create_model_version(name, "file:///x")
    c.create_model_version("50X_off", "file:///y")
    for name in TRICKY:
        versions = reg.list_versions(name)
        assert {v.model for v in versions} == {name}, name
        assert reg.get_model(name).version_count == (2 if name == "50X_off" else 1)
        reg.set_alias(name, "champion", "1")
        assert reg.get_model(name).aliases == {"champion": "1"}
    assert [m.name for m in history.list_models(reg, "50%_")] == ["50%_off"]
    assert len(reg.list_versions("50%_off")) == 1, "'%' and '_' must not match 50X_off's versions"


def test_unreachable_server_is_unavailable_fast():
    reg = MlflowRegistry(f"http://127.0.0.1:{free_port()}")
    t = time.monotonic()
    with pytest.raises(Unavailable) as info:
        reg.list_models()
    assert time.monotonic() - t < 20
    assert info.value.source == "MLflow registry"


def test_broken_store_is_unavailable(tmp_path):
    bad = tmp_path / "not-a-db"
    bad.mkdir()
    with pytest.raises(Unavailable):
        MlflowRegistry(f"sqlite:///{bad}").list_models()


@pytest.fixture(scope="module")
def mlflow_server(registry_template, tmp_path_factory):
    d = tmp_path_factory.mktemp("server")
    uri = fresh_registry(registry_template, d)
    port = free_port()
    env = {**os.environ, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--default-artifact-root",
         (d / "served").as_uri(), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"mlflow server did not start: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.2)
    yield url
    stop_process(proc, timeout=30)


def test_against_a_real_mlflow_server(mlflow_server):
    reg = MlflowRegistry(mlflow_server)
    names = {m.name for m in reg.list_models()}
    assert MODEL in names
    view = history.model_view(reg, MODEL)
    assert view.champion == "1" and len(view.versions) == 4
    d = reg.get_version_detail(MODEL, "2")
    assert d.signature is not None and "scipy==1.17.1" in d.requirements and d.run.datasets == ()
    reg.set_alias(MODEL, "champion", "2")
    assert reg.get_model(MODEL).aliases["champion"] == "2"
    assert reg.artifact_available(MODEL, "2") and not reg.artifact_available(MODEL, "4")


def test_store_in_a_missing_folder_is_unavailable(tmp_path):
    with pytest.raises(Unavailable, match="does not exist"):
        MlflowRegistry(f"sqlite:///{tmp_path / 'missing' / 'mlflow.db'}").list_models()


def test_resolve_storage_uri_matches_unannotated_endpoints(reg):
    loc = reg.storage_uri(MODEL, "2")
    ref = reg.resolve_storage_uri(loc + "/")
    assert (ref.model, ref.version, ref.storage_uri) == (MODEL, "2", loc)
    assert reg.resolve_storage_uri("s3://elsewhere/model") is None


def test_links_into_the_mlflow_ui_when_configured(registry_template, tmp_path):
    reg = MlflowRegistry(fresh_registry(registry_template, tmp_path / "r"), ui_url="https://mlflow.example")
    v = reg.get_version(MODEL, "1")
    d = reg.get_version_detail(MODEL, "1")
    assert v.experiment_id == d.run.experiment_id
    assert reg.run_link(d.run) == f"https://mlflow.example/#/experiments/{v.experiment_id}/runs/{v.run_id}"
    assert reg.version_link(MODEL, "1").startswith("https://mlflow.example/#/models/cls%20model%20%C3%BC")
    assert MlflowRegistry("sqlite:///x.db").run_link(d.run) is None
