"""Retraining (services/retraining): the payload and its signature, the person-triggered use case (role, reason,
window, audit) on fakes, following a run, and the settings that choose the adapter."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest

from services.errors import Invalid, PermissionDenied, PreconditionFailed, Unavailable
from services.identity import Actor
from services.predictions import PredictionRow
from services.retraining import RetrainRequest, body_bytes, payload, signature, verify_signature
from services.retraining.http import follow, new_run_id
from services.retraining.usecases import request_retraining
from tests.fakes import FakeAuditTrail, FakeClock, FakePredictionLog, FakeRetrainer, FakeServing

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
ALICE = Actor("alice", ("operator", "requester"))
CAROL = Actor("carol", ("viewer",))
BOB = Actor("bob", ("approver",))


def _request(**kw) -> RetrainRequest:
    base = dict(endpoint="screening", model="clf", version="2", reason="drift on mean texture", trigger="alice",
                evidence={"drift_share": 0.6, "at": T0}, window_start=T0 - timedelta(days=1), window_end=T0)
    return RetrainRequest(**{**base, **kw})


def test_payload_is_plain_json_with_the_window_and_evidence():
    p = payload(_request())
    assert p == {"endpoint": "screening", "model": "clf", "version": "2", "reason": "drift on mean texture",
                 "trigger": "alice", "evidence": {"drift_share": 0.6, "at": str(T0)},
                 "window": {"start": "2026-11-25T12:00:00+00:00", "end": "2026-11-26T12:00:00+00:00"}}
    assert json.loads(body_bytes(p)) == p
    assert body_bytes(p) == body_bytes(dict(reversed(list(p.items()))))  # keys sorted: one byte string per payload


def test_signature_is_hmac_sha256_over_timestamp_and_body():
    body = body_bytes(payload(_request()))
    expected = hmac.new(b"k" * 16, b"1764158400." + body, hashlib.sha256).hexdigest()
    assert signature("k" * 16, "1764158400", body) == "sha256=" + expected
    good = signature("k" * 16, "1764158400", body)
    assert verify_signature("k" * 16, "1764158400", body, good, now=1764158400 + 10)
    assert not verify_signature("x" * 16, "1764158400", body, good, now=1764158400)  # another key
    assert not verify_signature("k" * 16, "1764158400", body + b" ", good, now=1764158400)  # another body
    assert not verify_signature("k" * 16, "1764158401", body, good, now=1764158401)  # the timestamp is signed
    assert not verify_signature("k" * 16, "1764158400", body, good, now=1764158400 + 301)  # a replay, too late
    assert not verify_signature("k" * 16, "soon", body, good, now=1764158400)


def test_run_ids_are_unique_and_valid_airflow_run_ids():
    a, b = new_run_id(_request(endpoint="ns/fraud model"), 1764158400), new_run_id(_request(), 1764158400)
    assert a.startswith("retrain__ns-fraud-model__20251126T") and a != b
    assert all(ch.isalnum() or ch in "-_." for ch in a)


def _world(rows=()):
    clock = FakeClock(T0)
    serving, audit, log = FakeServing(clock=clock), FakeAuditTrail(clock), FakePredictionLog(clock)
    serving.add("screening", "clf", "2", canary="3", weight=10)
    log.write(list(rows))
    return serving, audit, log, clock


def test_an_operator_retrains_what_serves_stable_with_evidence_and_an_audit_entry():
    rows = [PredictionRow(f"r{i}", 0, "screening", T0 - timedelta(hours=2), "2", "stable", "clf", {"x": 1.0},
                          prediction=1, latency_ms=5.0) for i in range(4)]
    serving, audit, log, clock = _world(rows)
    log.add_labels([("r0", 0, 1), ("r1", 0, 0)])
    retrainer = FakeRetrainer()
    run = request_retraining(retrainer, audit, serving, ALICE, "screening", "accuracy fell", evidence={"ticket": 7},
                             predictions=log, clock=clock)
    assert run.run_id == "fake-1" and run.state == "queued"
    req = retrainer.requests[0]
    assert (req.model, req.version, req.trigger, req.reason) == ("clf", "2", "alice", "accuracy fell")
    assert (req.window_start, req.window_end) == (T0 - timedelta(days=7), T0)
    assert req.evidence["ticket"] == 7
    assert req.evidence["live"] == [{"version": "2", "role": "stable", "requests": 4, "errors": 0, "labelled": 2,
                                     "accuracy": 0.5, "mae": 0.5}]
    entry = audit.entries(limit=1, endpoint="screening", model="clf", version="2")[0]
    assert (entry.action, entry.actor, entry.result, entry.reason) == ("retrain", "alice", "ok", "accuracy fell")
    assert entry.after["run_id"] == "fake-1" and entry.before == {"model": "clf", "version": "2",
                                                                   "canary_version": "3"}
    assert entry.details["evidence"]["ticket"] == 7 and entry.details["request"]["window"]["end"] == T0.isoformat()


@pytest.mark.parametrize("actor, reason, endpoint, error", [
    (CAROL, "why", "screening", PermissionDenied),
    (BOB, "why", "screening", PermissionDenied),
    (ALICE, "  ", "screening", Invalid),
])
def test_refusals_are_audited_and_start_nothing(actor, reason, endpoint, error):
    serving, audit, log, clock = _world()
    retrainer = FakeRetrainer()
    with pytest.raises(error):
        request_retraining(retrainer, audit, serving, actor, endpoint, reason, clock=clock)
    assert retrainer.requests == []
    assert (audit.rows[-1]["action"], audit.rows[-1]["result"], audit.rows[-1]["actor"]) == ("retrain", "refused",
                                                                                          actor.name)


def test_an_endpoint_without_a_stable_version_and_a_backward_window_are_refused():
    serving, audit, log, clock = _world()
    serving.add("empty", None, None)
    with pytest.raises(PreconditionFailed, match="serves no known model version"):
        request_retraining(FakeRetrainer(), audit, serving, ALICE, "empty", "why", clock=clock)
    with pytest.raises(Invalid, match="starts"):
        request_retraining(FakeRetrainer(), audit, serving, ALICE, "screening", "why", start=T0, end=T0, clock=clock)
    assert [r["result"] for r in audit.rows] == ["refused", "refused"]


def test_a_failing_retrainer_is_audited_failed_and_a_failing_evidence_source_is_noted():
    serving, audit, log, clock = _world()
    log.fail["served"] = Unavailable("down", source="prediction log")
    retrainer = FakeRetrainer()
    run = request_retraining(retrainer, audit, serving, ALICE, "screening", "why", predictions=log, clock=clock)
    assert retrainer.requests[0].evidence["live_unavailable"] == "prediction log: down" and run.state == "queued"
    retrainer.fail["trigger"] = Unavailable("pipeline down", source="Airflow http://af")
    with pytest.raises(Unavailable):
        request_retraining(retrainer, audit, serving, ALICE, "screening", "why", clock=clock)
    assert audit.rows[-1]["result"] == "failed" and "Airflow http://af: pipeline down" in audit.rows[-1]["error"]


def test_follow_reads_until_the_run_ends_or_the_time_is_up():
    retrainer = FakeRetrainer(states=("running", "running", "succeeded"))
    run_id = retrainer.trigger(_request()).run_id
    slept: list[float] = []
    now = [0.0]

    def sleep(s):
        slept.append(s)
        now[0] += s

    run = follow(retrainer, run_id, timeout_s=60, every_s=5, sleep=sleep, monotonic=lambda: now[0])
    assert run.state == "succeeded" and run.new_version == "9" and slept == [5, 5]
    stuck = FakeRetrainer(states=("running",))
    run_id = stuck.trigger(_request()).run_id
    now[0], slept[:] = 0.0, []
    run = follow(stuck, run_id, timeout_s=12, every_s=5, sleep=sleep, monotonic=lambda: now[0])
    assert run.state == "running" and sum(slept) == 12


def _settings(**env):
    """Settings over a fresh data folder (a fixed one kept a console database from an older schema between runs)."""
    import tempfile
    from pathlib import Path

    from services.settings import Settings

    return Settings.from_env({"MLOPS_DATA_DIR": tempfile.mkdtemp(prefix="mlops-retrain-unit-"), **env},
                             secrets_path=Path("/nonexistent"))


@pytest.mark.parametrize("env, message", [
    ({"MLOPS_RETRAINER": "jenkins"}, "MLOPS_RETRAINER must be one of local, webhook, airflow"),
    ({"MLOPS_RETRAINER": "webhook", "MLOPS_RETRAIN_WEBHOOK_URL": "http://h/x"}, "at least 16 characters"),
    ({"MLOPS_RETRAINER": "webhook", "MLOPS_RETRAIN_WEBHOOK_URL": "ftp://h/x", "MLOPS_RETRAIN_WEBHOOK_SECRET": "s" * 16},
     "must be an http"),
    ({"MLOPS_RETRAINER": "airflow", "MLOPS_AIRFLOW_URL": "http://af"}, "MLOPS_AIRFLOW_DAG_ID"),
    ({"MLOPS_RETRAINER": "airflow", "MLOPS_AIRFLOW_URL": "http://af", "MLOPS_AIRFLOW_DAG_ID": "d"}, "basic auth"),
    ({"MLOPS_RETRAINER": "airflow", "MLOPS_AIRFLOW_URL": "http://af", "MLOPS_AIRFLOW_DAG_ID": "a/b",
      "MLOPS_AIRFLOW_TOKEN": "t"}, "letters, digits"),
    ({"MLOPS_RETRAIN_TIMEOUT_SECONDS": "0"}, "between 1 and 120"),
])
def test_retrainer_settings_are_checked(env, message):
    with pytest.raises(Invalid, match=message):
        _settings(**env)


def test_the_composition_root_builds_the_configured_retrainer():
    from services.composition import build
    from services.retraining.http import AirflowRetrainer, WebhookRetrainer
    from services.retraining.local import LocalRetrainer

    assert isinstance(build(_settings()).retrainer, LocalRetrainer)
    hook = build(_settings(MLOPS_RETRAINER="webhook", MLOPS_RETRAIN_WEBHOOK_URL="http://h/x",
                           MLOPS_RETRAIN_WEBHOOK_SECRET="s" * 16, MLOPS_RETRAIN_TIMEOUT_SECONDS="3")).retrainer
    assert isinstance(hook, WebhookRetrainer) and hook.timeout_s == 3 and "s" * 16 not in repr(hook.__dict__.get(
        "source"))
    s = _settings(MLOPS_RETRAINER="airflow", MLOPS_AIRFLOW_URL="http://af/", MLOPS_AIRFLOW_DAG_ID="retrain_model",
                  MLOPS_AIRFLOW_USERNAME="u", MLOPS_AIRFLOW_PASSWORD="p" * 9)
    assert "p" * 9 not in repr(s)
    flow = build(s).retrainer
    assert isinstance(flow, AirflowRetrainer) and flow.base_url == "http://af" and flow.auth == ("u", "p" * 9)


def test_a_retraining_is_an_event_on_the_endpoints_timeline():
    from services.incidents.events import audit_event

    serving, audit, log, clock = _world()
    request_retraining(FakeRetrainer(), audit, serving, ALICE, "screening", "accuracy fell", clock=clock)
    event = audit_event(audit.entries(limit=1)[0], "screening", "clf")
    assert event.title == "retraining of v2 queued (run fake-1) by alice: “accuracy fell”"
    assert event.versions == ("2",) and event.details["after"]["run_id"] == "fake-1"
    with pytest.raises(PermissionDenied):
        request_retraining(FakeRetrainer(), audit, serving, CAROL, "screening", "why", clock=clock)
    refused = audit_event(audit.entries(limit=1)[0], "screening", "clf")
    assert refused.title.startswith("REFUSED: Retrain — permission_denied: policy: carol may not retrain")


class _Registry:
    """Just what the local retrainer reads before it logs anything: a version, aliases, reference frames."""

    def __init__(self, train=None, holdout=None):
        self.frames = {"train": train, "eval": holdout}

    def get_version(self, model, version):
        from services.registry import VersionSummary

        return VersionSummary(model, version, run_id="abc", experiment_id="1")

    def aliases(self, model):
        return {"champion": "1"}

    def reference_data(self, model, version, kind="train"):
        from services.errors import NotFound

        if self.frames[kind] is None:
            raise NotFound(f"{model!r} v{version} logged no reference/{kind}.parquet", source="registry")
        return self.frames[kind]


def _local(registry, estimator):
    from services.explain.service import LoadedEstimator
    from services.retraining.local import LocalRetrainer

    return LocalRetrainer("sqlite:///unused.db", registry, FakePredictionLog(),
                          models=lambda m, v: LoadedEstimator(estimator, ("x",)))


def test_the_local_retrainer_refuses_what_it_cannot_refit_before_logging_anything():
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    one_class = pd.DataFrame({"x": [0.1, 0.2, 0.3], "target": [1, 1, 1]})
    with pytest.raises(PreconditionFailed, match="logged no training data"):
        _local(_Registry(), LogisticRegression()).trigger(_request(version="1"))
    with pytest.raises(PreconditionFailed, match="refitting LogisticRegression of v1 failed: .*class"):
        _local(_Registry(one_class, one_class), LogisticRegression()).trigger(_request(version="1"))
    with pytest.raises(PreconditionFailed, match="not a scikit-learn model"):
        _local(_Registry(one_class, one_class), object()).trigger(_request(version="1"))
    with pytest.raises(PreconditionFailed, match=r"lacks its input columns \['x'\]"):
        _local(_Registry(one_class.rename(columns={"x": "y"}), one_class), LogisticRegression()).trigger(
            _request(version="1"))
