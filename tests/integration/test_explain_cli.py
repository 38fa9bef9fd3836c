"""``python -m services explain`` as a subprocess on the real seeded demo registry: the explainer and output space
stated, and per row attributions that add up to the model's own output — checked against the registered model
loaded here with MLflow, independently of the explanation code; refusals with their exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import ROOT

CLS, REG = "breast-cancer-classifier", "diabetes-regressor"

pytestmark = pytest.mark.slow  # one demo seed and a few CLI processes


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    d = tmp_path_factory.mktemp("explain-demo")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "MLFLOW_TRACKING_URI", "KUBECONFIG"))}
    env.update({"MLOPS_DATA_DIR": str(d), "MLFLOW_TRACKING_URI": f"sqlite:///{d / 'mlflow.db'}",
                "MLOPS_DATABASE_URL": f"sqlite:///{d / 'console.db'}", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
                "GIT_PYTHON_REFRESH": "quiet", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"})
    subprocess.run([sys.executable, "-m", "services", "seed-demo"], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=300)
    return env


def run(env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "services", "explain", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180)


def many(env, *commands: tuple[str, ...]) -> list[subprocess.CompletedProcess]:
    """Several ``explain`` processes at once (each pays the imports); results in order."""
    procs = [subprocess.Popen([sys.executable, "-m", "services", "explain", *args], cwd=ROOT, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for args in commands]
    out = []
    for args, proc in zip(commands, procs, strict=True):
        stdout, stderr = proc.communicate(timeout=180)
        out.append(subprocess.CompletedProcess(args, proc.returncode, stdout, stderr))
    return out


def registered_model(env, name: str, version: str):
    """The version's model as MLflow itself loads it (not through services.explain)."""
    import mlflow.sklearn

    from services.registry.mlflow_registry import MlflowRegistry

    reg = MlflowRegistry(env["MLFLOW_TRACKING_URI"])
    return mlflow.sklearn.load_model(reg.storage_uri(name, version)), reg


def test_explain_rows_of_files_add_up_to_the_registered_models_outputs(demo, tmp_path):
    gbm, reg = registered_model(demo, CLS, "4")
    logreg, _ = registered_model(demo, CLS, "2")
    gbr, _ = registered_model(demo, REG, "3")
    held_out = reg.reference_data(CLS, "4", kind="eval")  # features + target; the CLI ignores the label
    rows = held_out.iloc[:25]
    rows.to_parquet(tmp_path / "rows.parquet")
    rows.drop(columns=["worst to mean radius ratio"]).iloc[:10].to_csv(tmp_path / "rows.csv", index=False)
    reg_rows = reg.reference_data(REG, "3", kind="eval").iloc[:15]
    reg_rows.to_parquet(tmp_path / "reg.parquet")
    tree, linear, regressor = many(
        demo, ("--model", CLS, "--version", "4", "--rows", str(tmp_path / "rows.parquet"), "--json"),
        ("--model", CLS, "--version", "2", "--rows", str(tmp_path / "rows.csv"), "--json"),
        ("--model", REG, "--version", "3", "--rows", str(tmp_path / "reg.parquet"), "--json"))
    cases = [(tree, "TreeExplainer", "log-odds", gbm.decision_function(rows.drop(columns="target")), 31, 25),
             (linear, "LinearExplainer", "log-odds",
              logreg.decision_function(rows.drop(columns=["target", "worst to mean radius ratio"]).iloc[:10]), 30, 10),
             (regressor, "TreeExplainer", "raw", gbr.predict(reg_rows.drop(columns="target")), 10, 15)]
    for proc, explainer, space, expected, n_features, n_rows in cases:
        assert proc.returncode == 0, proc.stderr[-2000:]
        doc = json.loads(proc.stdout)
        assert doc["explainer"].startswith(explainer) and doc["output_space"] == space
        assert len(doc["features"]) == n_features and "target" not in doc["features"]
        assert len(doc["rows"]) == n_rows and doc["row_count"] == n_rows
        outputs = np.array([r["output"] for r in doc["rows"]])
        np.testing.assert_allclose(outputs, expected, rtol=1e-9, atol=1e-9)  # the model's own output
        sums = np.array([doc["base_value"] + sum(r["attributions"].values()) for r in doc["rows"]])
        np.testing.assert_allclose(sums, expected, rtol=1e-6, atol=1e-6)  # additivity
        assert set(doc["rows"][0]["attributions"]) == set(doc["features"])
    linear_doc = json.loads(linear.stdout)
    assert "100 rows of v2's training reference" in linear_doc["background"]
    assert any("StandardScaler" in n for n in linear_doc["notes"])


def test_explain_text_defaults_to_the_held_out_frame(demo):
    proc = run(demo, "--model", CLS, "--version", "3", "--top", "2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == f"{CLS} v3: TreeExplainer (path-dependent TreeSHAP) on DecisionTreeClassifier"
    assert lines[1].startswith("output space: probability of class 1 · base value ")
    assert "rows: the 143 rows of v3's held-out frame" in lines
    row_lines = [ln for ln in lines if ln.startswith("row ")]
    assert len(row_lines) == 143 and all("8 more" in ln for ln in row_lines)  # 10 features: top 2 + 8 more


def test_explain_refusals_have_exit_codes(demo, tmp_path):
    import pandas as pd

    pd.DataFrame({"mean radius": [14.0]}).to_csv(tmp_path / "thin.csv", index=False)
    (tmp_path / "rows.txt").write_text("x")
    thin, unknown, wrong_kind = many(
        demo, ("--model", CLS, "--version", "2", "--rows", str(tmp_path / "thin.csv"), "--json"),
        ("--model", CLS, "--version", "99", "--json"),
        ("--model", CLS, "--version", "2", "--rows", str(tmp_path / "rows.txt")))
    assert thin.returncode == 2 and json.loads(thin.stdout)["error"] == "invalid"
    assert "lack 29 column(s) the model takes" in thin.stderr
    assert unknown.returncode == 4 and json.loads(unknown.stdout)["error"] == "not_found"
    assert wrong_kind.returncode == 2 and ".parquet or .csv" in wrong_kind.stderr
