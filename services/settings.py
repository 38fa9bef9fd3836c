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
    return {str(k).upper(): v for k, v in flat.items()}


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
    prometheus_timeout_seconds: int = 10  # MLOPS_PROMETHEUS_TIMEOUT_SECONDS
    promql_requests: str = DEFAULT_PROMQL_REQUESTS  # MLOPS_PROMQL_REQUESTS
    promql_errors: str = DEFAULT_PROMQL_ERRORS  # MLOPS_PROMQL_ERRORS
    promql_latency_buckets: str = DEFAULT_PROMQL_LATENCY_BUCKETS  # MLOPS_PROMQL_LATENCY_BUCKETS
    promql_latency_unit_ms: float = 1000.0  # MLOPS_PROMQL_LATENCY_UNIT_MS: milliseconds per unit of "le"
    promql_version_label: str = "version"  # MLOPS_PROMQL_VERSION_LABEL
    promql_role_label: str = "role"  # MLOPS_PROMQL_ROLE_LABEL
    alert_interval_seconds: int = 15  # MLOPS_ALERT_INTERVAL_SECONDS: how often `up` evaluates the alert rules
    alertmanager_url: str | None = None  # MLOPS_ALERTMANAGER_URL: read its alerts (with prometheus)
    audit_anchor_file: Path | None = None  # MLOPS_AUDIT_ANCHOR_FILE: the audit head, anchored outside the database
    audit_anchor_minutes: int = 60  # MLOPS_AUDIT_ANCHOR_MINUTES: how often `up` anchors it

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
    def from_env(cls, env: dict | None = None, secrets_path: Path | None = None) -> Settings:
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

        auth_mode = get("MLOPS_AUTH_MODE", "dev").strip().lower()
        if auth_mode != "dev":
            raise Invalid(f"MLOPS_AUTH_MODE must be 'dev' (OIDC login is not built yet), got {auth_mode!r}",
                          source="settings")
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
            auth_mode=auth_mode,
            approval_ttl_minutes=int_setting("MLOPS_APPROVAL_TTL_MINUTES", 24 * 60, 1, 60 * 24 * 90),
            metrics_source=metrics_source,
            live_window_minutes=int_setting("MLOPS_LIVE_WINDOW_MINUTES", 60, 1, 60 * 24 * 7),
            prediction_retention_days=int_setting("MLOPS_PREDICTION_RETENTION_DAYS", 30, 1, 3650),
            audit_anchor_file=Path(get("MLOPS_AUDIT_ANCHOR_FILE")).expanduser() if get("MLOPS_AUDIT_ANCHOR_FILE")
            else None,
            audit_anchor_minutes=int_setting("MLOPS_AUDIT_ANCHOR_MINUTES", 60, 1, 60 * 24),
            prometheus_url=prom_url.rstrip("/") if prom_url else None,
            prometheus_timeout_seconds=int_setting("MLOPS_PROMETHEUS_TIMEOUT_SECONDS", 10, 1, 300),
            promql_requests=get("MLOPS_PROMQL_REQUESTS", DEFAULT_PROMQL_REQUESTS),
            promql_errors=get("MLOPS_PROMQL_ERRORS", DEFAULT_PROMQL_ERRORS),
            promql_latency_buckets=get("MLOPS_PROMQL_LATENCY_BUCKETS", DEFAULT_PROMQL_LATENCY_BUCKETS),
            promql_latency_unit_ms=unit_ms,
            promql_version_label=get("MLOPS_PROMQL_VERSION_LABEL", "version"),
            promql_role_label=get("MLOPS_PROMQL_ROLE_LABEL", "role"),
            alert_interval_seconds=int_setting("MLOPS_ALERT_INTERVAL_SECONDS", 15, 1, 3600),
            alertmanager_url=(get("MLOPS_ALERTMANAGER_URL") or "").strip().rstrip("/") or None,
        )
