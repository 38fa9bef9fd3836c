"""Retention of the prediction log: raw rows past ``MLOPS_PREDICTION_RETENTION_DAYS`` are dropped, the
per-minute rollups stay (charts keep their history); a bad setting is refused."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.cli import main
from services.errors import Invalid
from services.predictions import PredictionRow
from services.settings import Settings
from tests.conftest import ENDPOINT, fresh_registry, make_container


def test_purge_drops_old_rows_and_keeps_rollups(registry_template, database_url, tmp_path, clock, capsys):
    c = make_container(fresh_registry(registry_template, tmp_path / "reg"), database_url, tmp_path, clock=clock,
                       MLOPS_PREDICTION_RETENTION_DAYS="7")
    try:
        old, new = clock() - timedelta(days=10), clock() - timedelta(days=1)
        c.predictions.write([PredictionRow("old", 0, ENDPOINT, old, "1", "stable", latency_ms=3.0),
                             PredictionRow("new", 0, ENDPOINT, new, "1", "stable", latency_ms=3.0)])
        assert main(["purge-predictions", "--json"], container=c) == 0
        assert '"dropped": 1' in capsys.readouterr().out
        assert [r.request_id for r in c.predictions.rows(ENDPOINT)] == ["new"]
        rollups = c.predictions.rollups(ENDPOINT, old - timedelta(minutes=1), clock())
        assert sum(r.count for r in rollups) == 2, "the old minute's rollup stays"
    finally:
        c.engine.dispose()


@pytest.mark.parametrize("value", ["0", "-3", "soon"])
def test_a_bad_retention_is_refused(value, tmp_path):
    with pytest.raises(Invalid, match="MLOPS_PREDICTION_RETENTION_DAYS"):
        Settings.from_env({"MLOPS_DATA_DIR": str(tmp_path), "MLOPS_PREDICTION_RETENTION_DAYS": value},
                          secrets_path=tmp_path / "none.toml")
