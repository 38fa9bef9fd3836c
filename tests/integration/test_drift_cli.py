"""``python -m services drift --reference A --current B``: a subprocess on temporary Parquet and CSV files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]


def drift(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLOPS_DATA_DIR": str(tmp_path / "data"), "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}
    return subprocess.run([sys.executable, "-m", "services", "drift", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("drift-files")
    rng = np.random.default_rng(42)
    n_ref, n_cur = 3000, 4000
    reference = pd.DataFrame({"age": rng.normal(40, 10, n_ref), "income": rng.lognormal(10, 0.5, n_ref),
                              "plan": rng.choice(["basic", "plus", "pro"], n_ref, p=[0.6, 0.3, 0.1]),
                              "legacy": rng.normal(0, 1, n_ref)})
    current = pd.DataFrame({"age": rng.normal(48, 10, n_cur),  # shifted by 0.8 SD
                            "income": rng.lognormal(10, 0.5, n_cur),
                            "plan": rng.choice(["basic", "plus", "pro"], n_cur, p=[0.6, 0.3, 0.1])})
    current.loc[:9, "income"] = np.nan
    paths = {"ref.parquet": folder / "ref.parquet", "cur.parquet": folder / "cur.parquet",
             "cur.csv": folder / "cur.csv", "broken.parquet": folder / "broken.parquet",
             "other.csv": folder / "other.csv", "notes.txt": folder / "notes.txt"}
    reference.to_parquet(paths["ref.parquet"], index=False)
    current.to_parquet(paths["cur.parquet"], index=False)
    current.to_csv(paths["cur.csv"], index=False)
    paths["broken.parquet"].write_bytes(b"this is not parquet at all")
    pd.DataFrame({"x": [1, 2], "y": [3, 4]}).to_csv(paths["other.csv"], index=False)
    paths["notes.txt"].write_text("a,b\n1,2\n")
    return paths


def test_json_per_column_and_the_verdict_from_parquet(files, tmp_path):
    p = drift(tmp_path, "--reference", str(files["ref.parquet"]), "--current", str(files["cur.parquet"]), "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    by = {c["column"]: c for c in out["columns"]}
    assert list(by) == ["age", "income", "plan", "legacy"]
    assert by["age"]["method"] == "wasserstein" and by["age"]["drifted"] is True and by["age"]["p_value"] is None
    assert by["income"]["drifted"] is False and by["income"]["missing_current"] == 10
    assert by["income"]["current_rows"] == 3990
    assert by["plan"]["kind"] == "categorical" and by["plan"]["method"] == "jensenshannon"
    assert by["legacy"]["computable"] is False and "current" in by["legacy"]["reason"]
    assert {"method", "statistic", "p_value", "threshold", "drifted"} <= set(by["age"])
    assert (out["computable_columns"], out["drifted_columns"], out["drifted"]) == (3, 1, False)
    assert out["share"] == pytest.approx(1 / 3)


def test_csv_gives_the_same_numbers_and_options_are_applied(files, tmp_path):
    parquet = json.loads(drift(tmp_path, "--reference", str(files["ref.parquet"]), "--current",
                               str(files["cur.parquet"]), "--json").stdout)
    p = drift(tmp_path, "--reference", str(files["ref.parquet"]), "--current", str(files["cur.csv"]), "--json")
    assert p.returncode == 0, p.stderr
    csv = json.loads(p.stdout)
    for a, b in zip(parquet["columns"], csv["columns"], strict=True):
        assert (a["method"], a["drifted"]) == (b["method"], b["drifted"])
        if a["statistic"] is not None:
            assert b["statistic"] == pytest.approx(a["statistic"], rel=1e-9)
    p = drift(tmp_path, "--reference", str(files["ref.parquet"]), "--current", str(files["cur.csv"]),
              "--columns", "age,plan", "--method", "psi", "--share-threshold", "0.5", "--json")
    out = json.loads(p.stdout)
    assert [(c["column"], c["method"]) for c in out["columns"]] == [("age", "psi"), ("plan", "psi")]
    assert out["drifted"] is True  # age drifted: one of two columns


def test_text_output_is_a_table_with_the_verdict(files, tmp_path):
    p = drift(tmp_path, "--reference", str(files["ref.parquet"]), "--current", str(files["cur.parquet"]))
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[1].split()[:3] == ["COLUMN", "KIND", "METHOD"]
    age = next(line for line in lines if line.startswith("age "))
    assert "wasserstein" in age and "DRIFT" in age
    assert any("not computable: not in the current data" in line for line in lines)
    assert lines[-1].startswith("no dataset drift: 1 of 3 computable columns drifted")


@pytest.mark.parametrize(("args", "message"), [
    (["--reference", "{ref}", "--current", "{missing}"], "no such file"),
    (["--reference", "{broken}", "--current", "{cur}"], "cannot read it as Parquet"),
    (["--reference", "{notes}", "--current", "{cur}"], "give a .csv or .parquet file"),
    (["--reference", "{ref}", "--current", "{other}"], "no column in common"),
    (["--reference", "{ref}", "--current", "{cur}", "--method", "kl"], "unknown drift method"),
    (["--reference", "{ref}", "--current", "{cur}", "--columns", "age,nope"], "no column nope"),
    (["--reference", "{ref}", "--current", "{cur}", "--share-threshold", "1.5"], "share threshold"),
    (["--current", "{cur}"], "give both --reference and --current"),
    ([], "give --reference and --current"),
])
def test_bad_input_is_a_clear_invalid_error_with_exit_code_2(files, tmp_path, args, message):
    paths = {"ref": files["ref.parquet"], "cur": files["cur.parquet"], "broken": files["broken.parquet"],
             "notes": files["notes.txt"], "other": files["other.csv"], "missing": tmp_path / "missing.parquet"}
    p = drift(tmp_path, *[a.format(**{k: str(v) for k, v in paths.items()}) for a in args], "--json")
    assert p.returncode == 2, (p.stdout, p.stderr)
    err = json.loads(p.stdout)
    assert err["error"] == "invalid" and err["source"] == "drift" and message in err["message"]
    assert "Traceback" not in p.stderr and message in p.stderr
