"""bench/monitoring.py's setup: a fresh console (SQLite, embedded defaults) per measurement, with the
reference profiles of the versions the events name, so every row is binned as in production."""

from __future__ import annotations

from pathlib import Path

EP, MODEL = "cancer-screening", "breast-cancer-classifier"


def feature_rows() -> list[dict]:
    from services.traffic import demo_rows

    return demo_rows(EP)[0]


def container(tmp: Path, name: str):
    from services.composition import build
    from services.settings import Settings

    d = tmp / name
    d.mkdir()
    env = {"MLOPS_DATA_DIR": str(d), "MLFLOW_TRACKING_URI": f"sqlite:///{d / 'mlflow.db'}",
           "MLOPS_DATABASE_URL": f"sqlite:///{d / 'console.db'}"}
    c = build(Settings.from_env(env, secrets_path=d / "none.toml"))
    save_profiles(c.predictions)
    return c, env


def save_profiles(log) -> None:
    """Reference profiles for both versions (as the demo derives them from training data), so every row's
    features and answer are binned into the histograms as in production: that work is part of the rate."""
    import pandas as pd

    from services.drift.bins import build_profile

    frame = pd.DataFrame(feature_rows())
    frame["target"] = [i % 2 for i in range(len(frame))]
    for version in ("2", "4"):
        log.save_profile(build_profile(MODEL, version, frame, source="bench"))
