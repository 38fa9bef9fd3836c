"""The composition root: builds every adapter from settings, once.

Pages get the container from ``dashboard.bootstrap.get_container`` (a
``st.cache_resource`` wrapper around :func:`build`), the CLI calls
:func:`build` directly, tests pass their own pieces. Adapters that may fail to
open (database, Kubernetes, policy file) are built on first use, so a broken
one only affects the pages that need it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from services.clock import Clock, utcnow
from services.identity import Directory
from services.registry import ModelRegistry
from services.settings import Settings


@dataclass
class Container:
    settings: Settings
    clock: Clock = utcnow
    overrides: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def registry(self) -> ModelRegistry:
        if "registry" in self.overrides:
            return self.overrides["registry"]
        from services.registry.mlflow_registry import MlflowRegistry

        return MlflowRegistry(self.settings.mlflow_tracking_uri, ui_url=self.settings.mlflow_ui_url)

    @cached_property
    def engine(self):
        if "engine" in self.overrides:
            return self.overrides["engine"]
        from services.store.db import make_engine

        return make_engine(self.settings.database_url)

    @cached_property
    def serving(self):
        if "serving" in self.overrides:
            return self.overrides["serving"]
        if self.settings.serving_backend == "kserve":
            from services.serving.kserve import KServeBackend

            registry = self.registry

            def resolve(uri: str):
                try:
                    return registry.resolve_storage_uri(uri)
                except Exception:  # noqa: BLE001 - unknown is the honest answer when the registry is down
                    return None

            return KServeBackend(self.settings.kserve_namespaces, self.settings.kserve_context,
                                 resolve_storage_uri=resolve, config_file=self.settings.kubeconfig)
        from services.serving.local import LocalServingBackend

        return LocalServingBackend(self.engine, clock=self.clock)

    @cached_property
    def audit(self):
        from services.audit.sql import SqlAuditTrail

        return SqlAuditTrail(self.engine, clock=self.clock)

    @cached_property
    def approvals(self):
        from services.approvals.sql import SqlApprovalRepository

        return SqlApprovalRepository(self.engine, clock=self.clock)

    @cached_property
    def intents(self):
        """What each action is about to do, recorded before it acts (services.actions.intents)."""
        from services.actions.intents_sql import SqlIntentStore

        return SqlIntentStore(self.engine)

    @cached_property
    def history(self):
        if "history" in self.overrides:
            return self.overrides["history"]
        from services.history.sql import SqlServingHistory

        return SqlServingHistory(self.engine, backend=self.settings.serving_backend, clock=self.clock)

    @cached_property
    def alerts(self):
        """The console's alert store (services.alerts): what the evaluator fires and people acknowledge."""
        if "alerts" in self.overrides:
            return self.overrides["alerts"]
        from services.alerts.sql import SqlAlertStore

        return SqlAlertStore(self.engine, clock=self.clock)

    @cached_property
    def external_alerts(self):
        """Alertmanager's alerts, read-only, where Prometheus is the metrics source and MLOPS_ALERTMANAGER_URL
        is set; else None."""
        if "external_alerts" in self.overrides:
            return self.overrides["external_alerts"]
        from services.alerts.alertmanager import AlertmanagerAlerts

        return AlertmanagerAlerts.from_settings(self.settings)

    @cached_property
    def predictions(self):
        """The prediction log; a version written without a reference profile gets one derived from its
        training data in the registry (services.drift.profiles), so its histograms start with its traffic."""
        from services.drift.profiles import ensure_profile
        from services.predictions.sql import SqlPredictionLog

        log = SqlPredictionLog(self.engine, clock=self.clock)

        def predict(model: str, version: str, frame):
            from services.explain.service import for_registry

            loaded = for_registry(self.registry).models(model, version)
            return loaded.estimator.predict(frame[list(loaded.columns)] if loaded.columns else frame)

        log.build_profile = lambda model, version: ensure_profile(log, self.registry, model, version,
                                                                  predict=predict)
        return log

    @cached_property
    def policy(self):
        if "policy" in self.overrides:
            return self.overrides["policy"]
        from services.actions.catalog import VOCABULARY
        from services.policy import Policy

        return Policy.load(self.settings.policy_file, VOCABULARY)

    @cached_property
    def directory(self) -> Directory:
        """Development identities; none when people sign in (MLOPS_AUTH_MODE oidc or proxy)."""
        return Directory(self.settings.identities if self.settings.auth_mode == "dev" else {})

    @cached_property
    def token_verifier(self):
        """Bearer tokens of the command line (MLOPS_AUTH_MODE oidc/proxy), against the issuer's keys."""
        if "token_verifier" in self.overrides:
            return self.overrides["token_verifier"]
        from services.auth.tokens import TokenVerifier

        s = self.settings
        return TokenVerifier(s.oidc_issuer or "", s.oidc_audience or "", timeout=s.oidc_timeout_seconds,
                             leeway=s.oidc_leeway_seconds)

    @cached_property
    def metrics(self):
        """The monitoring picture (``MLOPS_METRICS_SOURCE``): the prediction log's rollups (sql, the default)
        or Prometheus. Builds no connection: the first question does."""
        if "metrics" in self.overrides:
            return self.overrides["metrics"]
        from datetime import timedelta

        kw = {"history": self.history, "clock": self.clock,
              "window": timedelta(minutes=self.settings.live_window_minutes)}
        if self.settings.metrics_source == "prometheus":
            from services.metrics.prometheus import PrometheusMetricsSource

            return PrometheusMetricsSource.from_settings(self.settings, **kw)
        from services.metrics.sql import SqlMetricsSource

        def log():
            if hasattr(type(self), "predictions"):
                return self.predictions
            from services.predictions.sql import SqlPredictionLog

            return SqlPredictionLog(self.engine, clock=self.clock)

        return SqlMetricsSource(log, **kw)

    @property
    def live_metrics(self):
        """What live gates read: the metrics source, plus drift_share and attribution_shift (an override wins)."""
        if "live_metrics" in self.overrides:
            return self.overrides["live_metrics"]
        return self.gate_metrics

    @cached_property
    def gate_metrics(self):
        from datetime import timedelta

        from services.drift.gates import GateMetrics
        from services.explain.service import for_registry
        from services.registry import CHAMPION

        return GateMetrics(self.metrics, self.predictions, self.policy,
                           model_of=lambda endpoint: self.serving.get_endpoint(endpoint).model,
                           champion_of=lambda model: self.registry.aliases(model).get(CHAMPION),
                           explainer=lambda: for_registry(self.registry), clock=self.clock,
                           window=timedelta(minutes=self.settings.live_window_minutes))

    @cached_property
    def incidents(self):
        """The Incidents page's and the CLI's timeline, "what served at T", suspects and report; every port is
        built on first use, so one that cannot be built is one source marked unavailable."""
        from services.incidents import Incidents

        def drift():
            from services.drift.windows import endpoint_drift

            return lambda ep, s, e: endpoint_drift(self.predictions, self.policy.for_endpoint(ep).drift, ep, s,
                                                   e).alarms

        return Incidents(history=lambda: self.history, audit=lambda: self.audit, registry=lambda: self.registry,
                         serving=lambda: self.serving, alerts=lambda: getattr(self, "alerts", None), drift=drift,
                         predictions=lambda: self.predictions, metrics=lambda: self.metrics, clock=self.clock)

    @cached_property
    def retrainer(self):
        """Retraining (``MLOPS_RETRAINER``): ``local`` (train here, register the challenger), ``webhook`` (a signed
        POST to a pipeline) or ``airflow`` (a DAG run of its stable REST API)."""
        if "retrainer" in self.overrides:
            return self.overrides["retrainer"]
        s = self.settings
        if s.retrainer == "webhook":
            from services.retraining.http import WebhookRetrainer

            return WebhookRetrainer(s.retrain_webhook_url, s.retrain_webhook_secret,
                                    timeout_s=s.retrain_timeout_seconds)
        if s.retrainer == "airflow":
            from services.retraining.http import AirflowRetrainer

            return AirflowRetrainer(s.airflow_url, s.airflow_dag_id, username=s.airflow_username,
                                    password=s.airflow_password, token=s.airflow_token,
                                    timeout_s=s.retrain_timeout_seconds)
        from services.retraining.local import LocalRetrainer

        return LocalRetrainer(s.mlflow_tracking_uri, self.registry, self.predictions)

    @cached_property
    def actions(self):
        from datetime import timedelta

        from services.actions import Actions

        return Actions(registry=self.registry, serving=self.serving, audit=self.audit, approvals=self.approvals,
                       history=self.history, policy=self.policy, clock=self.clock,
                       approval_ttl=timedelta(minutes=self.settings.approval_ttl_minutes),
                       live_metrics=self.live_metrics, intents=self.intents,
                       retrainer=lambda: self.retrainer, predictions=lambda: self.predictions,
                       retrain_leases=lambda: self.retrain_leases)

    @cached_property
    def retrain_leases(self):
        """One retraining of an endpoint starting at a time, across processes (services.retraining.leases)."""
        if "retrain_leases" in self.overrides:
            return self.overrides["retrain_leases"]
        from services.retraining.leases_sql import SqlRetrainLeases

        return SqlRetrainLeases(self.engine)


def build(settings: Settings | None = None, *, clock: Clock = utcnow, **overrides) -> Container:
    return Container(settings or Settings.from_env(), clock=clock, overrides=overrides)
