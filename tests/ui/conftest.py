"""AppTest fixtures: a seeded demo in a temporary data folder, and the app pointed at it by environment."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT

APP = str(ROOT / "dashboard" / "app.py")


@pytest.fixture(scope="session")
def demo_env(tmp_path_factory):
    from services.composition import build
    from services.demo import seed_demo
    from services.settings import Settings

    d = tmp_path_factory.mktemp("demo")
    env = {"MLOPS_DATA_DIR": str(d), "MLFLOW_TRACKING_URI": f"sqlite:///{d / 'mlflow.db'}",
           "MLOPS_DATABASE_URL": f"sqlite:///{d / 'console.db'}"}
    c = build(Settings.from_env(env, secrets_path=d / "none.toml"))
    seed_demo(c.settings, c.registry, c.serving)
    c.engine.dispose()
    return env


@pytest.fixture
def app(demo_env, monkeypatch):
    """Returns a function: page file name, query params, identity -> an AppTest that has run."""
    from streamlit.testing.v1 import AppTest

    for k, v in demo_env.items():
        monkeypatch.setenv(k, v)
    for k in ("MLOPS_SERVING_BACKEND", "MLOPS_POLICY_FILE", "MLOPS_DEV_IDENTITIES"):
        monkeypatch.delenv(k, raising=False)

    def run(page: str | None = None, identity: str | None = None, **query) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=120)
        for k, v in query.items():
            at.query_params[k] = v
        if identity:
            at.session_state["dev-identity"] = identity
        if page:
            at.switch_page(str(ROOT / "pages" / page))
        at.run()
        return at

    return run


def texts(at) -> str:
    """All text the page shows (markdown, titles, captions, alerts), for 'key content present' checks."""
    parts = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "error", "warning", "info", "success",
                 "metric"):
        for el in getattr(at, kind):
            parts.append(str(getattr(el, "value", "")) + " " + str(getattr(el, "label", "")))
    return "\n".join(parts)
