"""Settings from the environment (and ``.streamlit/secrets.toml`` where present).

Environment variables win over secrets. Nothing here talks to a network; a
bad value raises :class:`~services.errors.Invalid` naming the variable.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from services.errors import Invalid

REPO_ROOT = Path(__file__).resolve().parent.parent

DEFAULT_IDENTITIES: dict[str, tuple[str, ...]] = {
    "alice": ("operator", "requester"),
    "bob": ("approver",),
    "carol": ("viewer",),
    "dana": ("admin",),
}

SERVING_BACKENDS = ("local", "kserve")
RETRAINERS = ("local", "webhook", "airflow")
METRICS_SOURCES = ("sql", "prometheus")
# PromQL templates of the Prometheus metrics source: $endpoint and $window (a range like 3600s) are filled in;
# each result must carry the labels named by MLOPS_PROMQL_VERSION_LABEL / MLOPS_PROMQL_ROLE_LABEL (use
# label_replace for KServe/Knative names), the buckets query also "le" (in MLOPS_PROMQL_LATENCY_UNIT_MS ms).
# The defaults count a window exactly as the counter at its end minus at its start (all of it when the series
# began inside the window); increase(...[$window]) survives counter resets (pods that come and go: use it on
# KServe) but misses a new series' first scrape and extrapolates to the window's edges.
_PROMQL_WINDOW = ('(sum by ({by}) ({m}{{endpoint="$endpoint"}}) - sum by ({by}) ({m}{{endpoint="$endpoint"}} offset '
                  '$window)) or sum by ({by}) ({m}{{endpoint="$endpoint"}})')
DEFAULT_PROMQL_REQUESTS = _PROMQL_WINDOW.format(by="version, role", m="mlops_gateway_requests_total")
DEFAULT_PROMQL_ERRORS = _PROMQL_WINDOW.format(by="version, role", m="mlops_gateway_errors_total")
# Replicas over time ($endpoint, and $namespace / $name of a KServe endpoint "NS/NAME"): the local gateway's own
# gauge per version, else the HorizontalPodAutoscaler KServe keeps for a Standard-mode predictor (kube-state-metrics).
DEFAULT_PROMQL_REPLICAS = ('sum by (version) (mlops_gateway_replicas{endpoint="$endpoint"}) or '
                           'sum(kube_horizontalpodautoscaler_status_current_replicas{namespace="$namespace",'
                           'horizontalpodautoscaler="$name-predictor"})')
DEFAULT_PROMQL_LATENCY_BUCKETS = _PROMQL_WINDOW.format(by="version, role, le",
                                                       m="mlops_gateway_request_duration_seconds_bucket")


def _read_secrets(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise Invalid(f"cannot read {path}: {exc}", source="settings") from exc
    # Accept both flat keys and a [mlops] table.
    flat = {k: v for k, v in data.items() if not isinstance(v, dict)}
    flat.update(data.get("mlops", {}))
    out = {str(k).upper(): v for k, v in flat.items()}
    auth = data.get("auth")  # Streamlit's own [auth] section (st.login): the CLI's token defaults come from it
    if isinstance(auth, dict):
        out[AUTH_SECTION] = {k: v for k, v in auth.items() if k in ("server_metadata_url", "client_id")}
    return out


AUTH_SECTION = "[auth]"  # where _read_secrets keeps what it read of Streamlit's [auth] section


def parse_identities(text: str) -> dict[str, tuple[str, ...]]:
    """``"alice=operator+requester,bob=approver"`` -> {"alice": ("operator", "requester"), ...}."""
    out: dict[str, tuple[str, ...]] = {}
    for chunk in text.split(","):
        chunk = chunk.strip()
        if not chunk:
            continue
        name, sep, roles = chunk.partition("=")
        if not sep or not name.strip() or not roles.strip():
            raise Invalid(
                f"MLOPS_DEV_IDENTITIES entry {chunk!r} is not NAME=ROLE[+ROLE...]", source="settings"
            )
        out[name.strip()] = tuple(r.strip() for r in roles.split("+") if r.strip())
    if not out:
        raise Invalid("MLOPS_DEV_IDENTITIES is empty", source="settings")
    return out


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    mlflow_tracking_uri: str
    database_url: str
    mlflow_ui_url: str | None = None
    serving_backend: str = "local"
    kserve_namespaces: tuple[str, ...] = ()
    kserve_context: str | None = None
    kubeconfig: str | None = None  # KUBECONFIG (read per settings, not once per process)
    policy_file: Path = REPO_ROOT / "deploy" / "policy.yaml"
    identities: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_IDENTITIES))
    auth_mode: str = "dev"
    approval_ttl_minutes: int = 24 * 60
    metrics_source: str = "sql"  # MLOPS_METRICS_SOURCE: sql (prediction-log rollups) | prometheus
    live_window_minutes: int = 60  # MLOPS_LIVE_WINDOW_MINUTES: the window live gates read (at most)
    prediction_retention_days: int = 30  # MLOPS_PREDICTION_RETENTION_DAYS: raw rows kept; rollups stay
    prometheus_url: str | None = None  # MLOPS_PROMETHEUS_URL
    prometheus_timeout_seconds: int = 5  # MLOPS_PROMETHEUS_TIMEOUT_SECONDS: a page answers within 10 s
    promql_requests: str = DEFAULT_PROMQL_REQUESTS  # MLOPS_PROMQL_REQUESTS
    promql_errors: str = DEFAULT_PROMQL_ERRORS  # MLOPS_PROMQL_ERRORS
    promql_latency_buckets: str = DEFAULT_PROMQL_LATENCY_BUCKETS  # MLOPS_PROMQL_LATENCY_BUCKETS
    promql_replicas: str = DEFAULT_PROMQL_REPLICAS  # MLOPS_PROMQL_REPLICAS: replicas over time
    promql_latency_unit_ms: float = 1000.0  # MLOPS_PROMQL_LATENCY_UNIT_MS: milliseconds per unit of "le"
    promql_version_label: str = "version"  # MLOPS_PROMQL_VERSION_LABEL
    promql_role_label: str = "role"  # MLOPS_PROMQL_ROLE_LABEL
    alert_interval_seconds: int = 15  # MLOPS_ALERT_INTERVAL_SECONDS: how often `up` evaluates the alert rules
    alertmanager_url: str | None = None  # MLOPS_ALERTMANAGER_URL: read its alerts (with prometheus)
    audit_anchor_file: Path | None = None  # MLOPS_AUDIT_ANCHOR_FILE: the audit head, anchored outside the database
    audit_anchor_minutes: int = 60  # MLOPS_AUDIT_ANCHOR_MINUTES: how often `up` anchors it
    # Signing in (MLOPS_AUTH_MODE oidc | proxy; services/auth). dev: development identities (the demo).
    allow_dev_auth: bool = False  # MLOPS_ALLOW_DEV_AUTH: dev identities even on data that is not local
    role_map: dict[str, tuple[str, ...]] = field(default_factory=dict)  # MLOPS_OIDC_ROLE_MAP: group -> roles
    oidc_roles_claim: str = "groups"  # MLOPS_OIDC_ROLES_CLAIM (a dotted path reaches nested claims)
    default_role: str = "viewer"  # MLOPS_OIDC_DEFAULT_ROLE: viewer | none, for people no group maps
    oidc_session_hours: int = 12  # MLOPS_OIDC_SESSION_HOURS: a browser sign-in older than this is renewed
    oidc_issuer: str | None = None  # MLOPS_OIDC_ISSUER (else [auth] server_metadata_url): the CLI's tokens
    oidc_audience: str | None = None  # MLOPS_OIDC_AUDIENCE (else [auth] client_id)
    oidc_timeout_seconds: int = 10  # MLOPS_OIDC_TIMEOUT_SECONDS: every call to the issuer
    oidc_leeway_seconds: int = 60  # MLOPS_OIDC_LEEWAY_SECONDS: clock skew allowed on exp/nbf/iat
    trusted_proxies: tuple[str, ...] = ()  # MLOPS_TRUSTED_PROXIES: the authenticating proxy's addresses
    proxy_user_header: str = "X-Forwarded-User"  # MLOPS_PROXY_USER_HEADER: the subject
    proxy_email_header: str = "X-Forwarded-Email"  # MLOPS_PROXY_EMAIL_HEADER
    proxy_groups_header: str = "X-Forwarded-Groups"  # MLOPS_PROXY_GROUPS_HEADER: comma-separated
    proxy_name_header: str = "X-Forwarded-Preferred-Username"  # MLOPS_PROXY_NAME_HEADER: the name shown
    # Retraining (services/retraining): MLOPS_RETRAINER local | webhook | airflow, and what each needs
    retrainer: str = "local"
    retrain_webhook_url: str | None = None  # MLOPS_RETRAIN_WEBHOOK_URL
    retrain_webhook_secret: str | None = field(default=None, repr=False)  # MLOPS_RETRAIN_WEBHOOK_SECRET (HMAC key)
    airflow_url: str | None = None  # MLOPS_AIRFLOW_URL: the webserver's base URL (…/api/v1 is added)
    airflow_dag_id: str | None = None  # MLOPS_AIRFLOW_DAG_ID
    airflow_username: str | None = None  # MLOPS_AIRFLOW_USERNAME / _PASSWORD (basic auth) or _TOKEN (bearer)
    airflow_password: str | None = field(default=None, repr=False)
    airflow_token: str | None = field(default=None, repr=False)
    retrain_timeout_seconds: int = 10  # MLOPS_RETRAIN_TIMEOUT_SECONDS: every call to the webhook or Airflow
    retrain_check_minutes: int = 15  # MLOPS_RETRAIN_CHECK_MINUTES: how often the worker checks the retraining rules

    @property
    def anchor_file(self) -> Path:
        return self.audit_anchor_file or self.data_dir / "audit-anchors.jsonl"

    @property
    def artifact_root(self) -> Path:
        return self.data_dir / "mlartifacts"

    @property
    def registry_is_local(self) -> bool:
        """True when the registry is a file or SQLite store we may seed."""
        uri = self.mlflow_tracking_uri
        return uri.startswith("sqlite:") or uri.startswith("file:") or "://" not in uri

    @classmethod
    def from_env(cls, env: dict | None = None, secrets_path: Path | None = None, *,
                 for_people: bool = False) -> Settings:
        """``for_people``: this process lets people act under its identities (the dashboard, a CLI command
        that acts); development identities are then refused on data that is not local unless
        MLOPS_ALLOW_DEV_AUTH=1 (services/auth/local.py). Processes that act for nobody (ingest, gateway,
        migrations) leave it False."""
        env = dict(os.environ if env is None else env)
        secrets = _read_secrets(secrets_path or REPO_ROOT / ".streamlit" / "secrets.toml")

        def get(name: str, default=None):
            if env.get(name) not in (None, ""):
                return env[name]
            if name in secrets and secrets[name] not in (None, ""):
                return str(secrets[name])
            return default

        data_dir = Path(get("MLOPS_DATA_DIR", "./.mlops")).expanduser().resolve()
        tracking = get("MLFLOW_TRACKING_URI") or f"sqlite:///{data_dir / 'mlflow.db'}"
        db_url = get("MLOPS_DATABASE_URL") or f"sqlite:///{data_dir / 'console.db'}"
        if not (db_url.startswith("sqlite") or db_url.startswith("postgresql")):
            raise Invalid(
                f"MLOPS_DATABASE_URL must be a sqlite:// or postgresql:// URL, got {db_url.split('://')[0]}://…",
                source="settings",
            )
        backend = get("MLOPS_SERVING_BACKEND", "local").strip().lower()
        if backend not in SERVING_BACKENDS:
            raise Invalid(
                f"MLOPS_SERVING_BACKEND must be one of {', '.join(SERVING_BACKENDS)}, got {backend!r}",
                source="settings",
            )
        namespaces = tuple(n.strip() for n in get("MLOPS_KSERVE_NAMESPACES", "").split(",") if n.strip())
        ids_text = get("MLOPS_DEV_IDENTITIES")
        identities = parse_identities(ids_text) if ids_text else dict(DEFAULT_IDENTITIES)

        def int_setting(name: str, default: int, lo: int, hi: int) -> int:
            raw = get(name, str(default))
            try:
                value = int(str(raw).strip())
            except ValueError as exc:
                raise Invalid(f"{name} must be a whole number, got {raw!r}", source="settings") from exc
            if not lo <= value <= hi:
                raise Invalid(f"{name} must be between {lo} and {hi}, got {value}", source="settings")
            return value

        auth = _auth_settings(get, secrets.get(AUTH_SECTION) or {}, int_setting)
        if auth["auth_mode"] == "dev" and for_people and not auth["allow_dev_auth"]:
            from services.auth.local import not_local, refusal

            reasons = not_local(database_url=db_url, tracking_uri=tracking, serving_backend=backend)
            if reasons:
                raise Invalid(refusal(reasons), source="settings")
        policy = Path(get("MLOPS_POLICY_FILE", str(REPO_ROOT / "deploy" / "policy.yaml"))).expanduser()
        ui = get("MLOPS_MLFLOW_UI_URL")
        metrics_source = get("MLOPS_METRICS_SOURCE", "sql").strip().lower()
        if metrics_source not in METRICS_SOURCES:
            raise Invalid(f"MLOPS_METRICS_SOURCE must be one of {', '.join(METRICS_SOURCES)}, got {metrics_source!r}",
                          source="settings")
        prom_url = get("MLOPS_PROMETHEUS_URL")
        if metrics_source == "prometheus" and not prom_url:
            raise Invalid("MLOPS_METRICS_SOURCE=prometheus needs MLOPS_PROMETHEUS_URL", source="settings")
        unit_raw = get("MLOPS_PROMQL_LATENCY_UNIT_MS", "1000")
        try:
            unit_ms = float(unit_raw)
        except ValueError as exc:
            raise Invalid(f"MLOPS_PROMQL_LATENCY_UNIT_MS must be a number, got {unit_raw!r}",
                          source="settings") from exc
        return cls(
            data_dir=data_dir,
            mlflow_tracking_uri=tracking,
            database_url=db_url,
            mlflow_ui_url=ui.rstrip("/") if ui else None,
            serving_backend=backend,
            kserve_namespaces=namespaces,
            kserve_context=get("MLOPS_KSERVE_CONTEXT"),
            kubeconfig=get("KUBECONFIG"),
            policy_file=policy,
            identities=identities,
            **auth,
            approval_ttl_minutes=int_setting("MLOPS_APPROVAL_TTL_MINUTES", 24 * 60, 1, 60 * 24 * 90),
            metrics_source=metrics_source,
            live_window_minutes=int_setting("MLOPS_LIVE_WINDOW_MINUTES", 60, 1, 60 * 24 * 7),
            prediction_retention_days=int_setting("MLOPS_PREDICTION_RETENTION_DAYS", 30, 1, 3650),
            audit_anchor_file=Path(get("MLOPS_AUDIT_ANCHOR_FILE")).expanduser() if get("MLOPS_AUDIT_ANCHOR_FILE")
            else None,
            audit_anchor_minutes=int_setting("MLOPS_AUDIT_ANCHOR_MINUTES", 60, 1, 60 * 24),
            prometheus_url=prom_url.rstrip("/") if prom_url else None,
            prometheus_timeout_seconds=int_setting("MLOPS_PROMETHEUS_TIMEOUT_SECONDS", 5, 1, 300),
            promql_requests=get("MLOPS_PROMQL_REQUESTS", DEFAULT_PROMQL_REQUESTS),
            promql_errors=get("MLOPS_PROMQL_ERRORS", DEFAULT_PROMQL_ERRORS),
            promql_latency_buckets=get("MLOPS_PROMQL_LATENCY_BUCKETS", DEFAULT_PROMQL_LATENCY_BUCKETS),
            promql_replicas=get("MLOPS_PROMQL_REPLICAS", DEFAULT_PROMQL_REPLICAS),
            promql_latency_unit_ms=unit_ms,
            promql_version_label=get("MLOPS_PROMQL_VERSION_LABEL", "version"),
            promql_role_label=get("MLOPS_PROMQL_ROLE_LABEL", "role"),
            alert_interval_seconds=int_setting("MLOPS_ALERT_INTERVAL_SECONDS", 15, 1, 3600),
            alertmanager_url=(get("MLOPS_ALERTMANAGER_URL") or "").strip().rstrip("/") or None,
            **_retrain_settings(get, int_setting),
        )


def _http_url(name: str, value: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Invalid(f"{name} must be an http:// or https:// URL, got {value!r}", source="settings")
    return value


def _retrain_settings(get, int_setting) -> dict:
    """MLOPS_RETRAINER and what its adapter needs, checked (services/retraining)."""
    kind = get("MLOPS_RETRAINER", "local").strip().lower()
    if kind not in RETRAINERS:
        raise Invalid(f"MLOPS_RETRAINER must be one of {', '.join(RETRAINERS)}, got {kind!r}", source="settings")
    out = {"retrainer": kind, "retrain_timeout_seconds": int_setting("MLOPS_RETRAIN_TIMEOUT_SECONDS", 10, 1, 120),
           "retrain_check_minutes": int_setting("MLOPS_RETRAIN_CHECK_MINUTES", 15, 1, 24 * 60)}
    hook, secret = (get("MLOPS_RETRAIN_WEBHOOK_URL") or "").strip(), get("MLOPS_RETRAIN_WEBHOOK_SECRET") or ""
    if kind == "webhook":
        if not hook or len(secret) < 16:
            raise Invalid("MLOPS_RETRAINER=webhook needs MLOPS_RETRAIN_WEBHOOK_URL and MLOPS_RETRAIN_WEBHOOK_SECRET "
                          "(the HMAC key, at least 16 characters)", source="settings")
        out.update(retrain_webhook_url=_http_url("MLOPS_RETRAIN_WEBHOOK_URL", hook), retrain_webhook_secret=secret)
    base, dag = (get("MLOPS_AIRFLOW_URL") or "").strip().rstrip("/"), (get("MLOPS_AIRFLOW_DAG_ID") or "").strip()
    user, password, token = get("MLOPS_AIRFLOW_USERNAME"), get("MLOPS_AIRFLOW_PASSWORD"), get("MLOPS_AIRFLOW_TOKEN")
    if kind == "airflow":
        if not base or not dag:
            raise Invalid("MLOPS_RETRAINER=airflow needs MLOPS_AIRFLOW_URL and MLOPS_AIRFLOW_DAG_ID", source="settings")
        if not all(ch.isalnum() or ch in "-_." for ch in dag):
            raise Invalid(f"MLOPS_AIRFLOW_DAG_ID must be letters, digits, '-', '_' or '.', got {dag!r}",
                          source="settings")
        if not token and not (user and password):
            raise Invalid("MLOPS_RETRAINER=airflow needs MLOPS_AIRFLOW_USERNAME and MLOPS_AIRFLOW_PASSWORD (basic "
                          "auth) or MLOPS_AIRFLOW_TOKEN", source="settings")
        out.update(airflow_url=_http_url("MLOPS_AIRFLOW_URL", base), airflow_dag_id=dag, airflow_username=user,
                   airflow_password=password, airflow_token=token)
    return out


def _flag(value) -> bool:
    return str(value or "").strip().lower() in ("1", "true", "yes", "on")


def _auth_settings(get, auth_section: dict, int_setting) -> dict:
    """MLOPS_AUTH_MODE and what its mode needs, checked (services/auth)."""
    from services.auth import AUTH_MODES
    from services.auth.proxy import parse_trusted_proxies
    from services.auth.roles import DEFAULT_ROLES, parse_role_map
    from services.auth.tokens import issuer_of

    mode = get("MLOPS_AUTH_MODE", "dev").strip().lower()
    if mode not in AUTH_MODES:
        raise Invalid(f"MLOPS_AUTH_MODE must be one of {', '.join(AUTH_MODES)}, got {mode!r}", source="settings")
    default_role = get("MLOPS_OIDC_DEFAULT_ROLE", "viewer").strip().lower()
    if default_role not in DEFAULT_ROLES:
        raise Invalid(f"MLOPS_OIDC_DEFAULT_ROLE must be one of {', '.join(DEFAULT_ROLES)}, got {default_role!r}",
                      source="settings")
    map_text = get("MLOPS_OIDC_ROLE_MAP")
    if mode != "dev" and not map_text:
        raise Invalid(f"MLOPS_AUTH_MODE={mode} needs MLOPS_OIDC_ROLE_MAP: which groups get which console roles, "
                      "e.g. ml-approvers=approver,ml-ops=operator+requester", source="settings")
    metadata_url = str(auth_section.get("server_metadata_url") or "")
    issuer = (get("MLOPS_OIDC_ISSUER") or issuer_of(metadata_url) or "").strip() or None
    if issuer:
        from urllib.parse import urlsplit

        parts = urlsplit(issuer)
        local = parts.hostname in ("localhost", "127.0.0.1", "::1")
        if parts.scheme != "https" and not (parts.scheme == "http" and local):
            raise Invalid(f"MLOPS_OIDC_ISSUER must be an https:// URL (http:// only on localhost), got {issuer!r}",
                          source="settings")
    audience = (get("MLOPS_OIDC_AUDIENCE") or str(auth_section.get("client_id") or "")).strip() or None
    proxies = get("MLOPS_TRUSTED_PROXIES", "")
    if mode == "proxy" or proxies:
        proxies = ",".join(str(n) for n in parse_trusted_proxies(proxies))
    headers = {}
    for key, name, default in (("user", "USER", "X-Forwarded-User"), ("email", "EMAIL", "X-Forwarded-Email"),
                               ("groups", "GROUPS", "X-Forwarded-Groups"),
                               ("name", "NAME", "X-Forwarded-Preferred-Username")):
        value = get(f"MLOPS_PROXY_{name}_HEADER", default).strip()
        if not value or not all(ch.isalnum() or ch in "-_" for ch in value):
            raise Invalid(f"MLOPS_PROXY_{name}_HEADER must be an HTTP header name, got {value!r}", source="settings")
        headers[f"proxy_{key}_header"] = value
    claim = get("MLOPS_OIDC_ROLES_CLAIM", "groups").strip()
    if not claim:
        raise Invalid("MLOPS_OIDC_ROLES_CLAIM is empty", source="settings")
    return dict(
        auth_mode=mode, allow_dev_auth=_flag(get("MLOPS_ALLOW_DEV_AUTH")),
        role_map=parse_role_map(map_text) if map_text else {}, oidc_roles_claim=claim, default_role=default_role,
        oidc_session_hours=int_setting("MLOPS_OIDC_SESSION_HOURS", 12, 1, 24 * 30),
        oidc_issuer=issuer, oidc_audience=audience,
        oidc_timeout_seconds=int_setting("MLOPS_OIDC_TIMEOUT_SECONDS", 10, 1, 120),
        oidc_leeway_seconds=int_setting("MLOPS_OIDC_LEEWAY_SECONDS", 60, 0, 600),
        trusted_proxies=tuple(p for p in proxies.split(",") if p), **headers)
