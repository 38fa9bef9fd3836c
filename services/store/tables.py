"""The tables of the console database at :data:`~services.store.db.HEAD` (SQLAlchemy Core).

The Alembic migrations (:mod:`services.store.migrations`) take an older database here; an empty one is
created from these definitions. Times are :func:`services.clock.iso` text (fixed width, sorts as time).
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Double,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

endpoints = Table(
    "endpoints",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("model", String(255), nullable=False),
    Column("stable_version", String(32)),
    Column("canary_version", String(32)),
    Column("canary_weight", Integer, nullable=False, default=0),
    Column("resource_version", Integer, nullable=False, default=1),
    Column("replicas", Integer, nullable=False, default=1),
    Column("url", String(1024)),
    Column("ready", Boolean, nullable=False, default=True),
    Column("created_at", String(40), nullable=False),
    Column("updated_at", String(40), nullable=False),
    # 0009: the local backend's scaling bounds and target (NULL: the gateway's default; services.gateway.workers)
    Column("min_replicas", Integer),
    Column("max_replicas", Integer),
    Column("scale_metric", String(16)),
    Column("scale_target", Integer),
)

endpoint_revisions = Table(  # the local serving backend's own revision list
    "endpoint_revisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("endpoint", String(255), nullable=False, index=True),
    Column("resource_version", Integer, nullable=False),
    Column("stable_version", String(32)),
    Column("canary_version", String(32)),
    Column("canary_weight", Integer, nullable=False),
    Column("at", String(40), nullable=False),
    Column("actor", String(255)),
    Column("note", Text, nullable=False, default=""),
    Column("approved_by", String(255)),  # 0002
)

approval_requests = Table(
    "approval_requests",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("endpoint", String(255), nullable=False, index=True),
    Column("model", String(255)),
    Column("action", String(64), nullable=False),
    Column("params", Text, nullable=False),  # canonical JSON
    Column("requester", String(255), nullable=False),
    Column("reason", Text, nullable=False),
    Column("plan_hash", String(64), nullable=False),
    Column("plan", Text, nullable=False),  # canonical JSON of the dry run it was made on
    Column("created_at", String(40), nullable=False),
    Column("expires_at", String(40), nullable=False),
    Column("status", String(16), nullable=False, index=True),
    Column("decided_by", String(255)),
    Column("decided_at", String(40)),
    Column("decision_reason", Text),
    Column("row_version", Integer, nullable=False, default=1),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("ts", String(40), nullable=False),
    Column("actor", String(255), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(512), nullable=False),
    Column("result", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("error", Text, nullable=False),
    Column("before", Text, nullable=False),
    Column("after", Text, nullable=False),
    Column("gates", Text, nullable=False),
    Column("details", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    # 0003: derived index columns (services.audit.sql.index_columns), NOT part of the hash chain
    Column("endpoint", String(512), index=True),
    Column("model", String(512), index=True),
    Column("version", String(64), index=True),
)

serving_changes = Table(  # 0004: the serving history (services.history.sql)
    "serving_changes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("endpoint", String(255), nullable=False),
    Column("at", String(40), nullable=False),  # services.clock.iso: fixed width, sorts as text
    Column("stable_version", String(32)),
    Column("canary_version", String(32)),
    Column("canary_weight", Integer, nullable=False, default=0),
    Column("actor", String(255)),
    Column("approved_by", String(255)),
    Column("note", Text, nullable=False, default=""),
    Column("source", String(16), nullable=False),  # console | backend | seed | migration
    Column("backend", String(32)),  # the serving backend it happened on (local, kserve)
    Index("ix_serving_changes_endpoint_at", "endpoint", "at"),
)

# 0005: the prediction log (services.predictions.sql). Times are services.clock.iso text like serving_changes.
# The primary key (request_id, row) is the "exactly once" key and, request_id leading, its lookup index.
predictions = Table(
    "predictions",
    metadata,
    Column("request_id", String(255), nullable=False),
    Column("row", Integer, nullable=False),
    Column("endpoint", String(255), nullable=False),
    Column("at", String(40), nullable=False),
    Column("model", String(255)),
    Column("version", String(32)),
    Column("role", String(16), nullable=False),
    Column("features", Text, nullable=False),  # JSON
    Column("prediction", Text, nullable=False),  # JSON
    Column("latency_ms", Double),
    Column("status", Integer, nullable=False),
    Column("error", Text, nullable=False),
    Column("label", Text),  # JSON; NULL until ground truth arrives
    Column("labelled_at", String(40)),
    PrimaryKeyConstraint("request_id", "row", name="pk_predictions"),
    Index("ix_predictions_endpoint_at", "endpoint", "at"),
)

LATENCY_BUCKET_COLUMNS = tuple(f"latency_le_{i:02d}" for i in range(13))  # one per LATENCY_BUCKETS_MS bucket
PREDICTION_BIN_COLUMNS = tuple(f"pred_{i:02d}" for i in range(12))  # one per histograms.PREDICTION_SLOTS slot
HISTOGRAM_BIN_COLUMNS = tuple(f"bin_{i:02d}" for i in range(12))  # the same slots, in feature_histograms

prediction_rollups = Table(  # 0005: per minute × endpoint × version × role, every counter added with +
    "prediction_rollups",
    metadata,
    Column("minute", String(40), nullable=False),
    Column("endpoint", String(255), nullable=False),
    Column("version", String(32), nullable=False),  # "" for unknown (NULL never conflicts in a unique key)
    Column("role", String(16), nullable=False),
    Column("count", Integer, nullable=False),
    Column("errors", Integer, nullable=False),
    Column("latency_sum_ms", Double, nullable=False),
    *(Column(name, Integer, nullable=False) for name in LATENCY_BUCKET_COLUMNS),
    Column("labelled", Integer, nullable=False),
    Column("correct", Integer, nullable=False),
    Column("abs_error_sum", Double, nullable=False),
    Column("sq_error_sum", Double, nullable=False),
    # 0006: the prediction histogram on the version's fixed bins (services.predictions.histograms)
    *(Column(name, Integer, nullable=False, server_default="0") for name in PREDICTION_BIN_COLUMNS),
    # the upsert's conflict key; endpoint then minute leading, it is also the index of a window's query
    PrimaryKeyConstraint("endpoint", "minute", "version", "role", name="pk_prediction_rollups"),
)

# 0006: each version's reference profile (services.drift.bins), derived once: the first stored stays
reference_profiles = Table(
    "reference_profiles",
    metadata,
    Column("model", String(255), nullable=False),
    Column("version", String(32), nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("source", Text, nullable=False),
    Column("profile", Text, nullable=False),  # JSON: Profile.as_dict()
    PrimaryKeyConstraint("model", "version", name="pk_reference_profiles"),
)

# 0006: per hour × endpoint × version × role × feature on the version's fixed bins, every counter added with +
feature_histograms = Table(
    "feature_histograms",
    metadata,
    Column("endpoint", String(255), nullable=False),
    Column("hour", String(40), nullable=False),
    Column("version", String(32), nullable=False),  # "" for unknown, as in prediction_rollups
    Column("role", String(16), nullable=False),
    Column("feature", String(255), nullable=False),
    *(Column(name, Integer, nullable=False) for name in HISTOGRAM_BIN_COLUMNS),  # the last: missing values
    Column("total", Double, nullable=False),  # sum of the values that are not missing (numeric features)
    Column("total_sq", Double, nullable=False),
    PrimaryKeyConstraint("endpoint", "hour", "version", "role", "feature", name="pk_feature_histograms"),
)

# 0007: alerts (services.alerts.sql). ``firing`` is 1 while the alert fires and NULL once resolved: the unique key
# (endpoint, rule, firing) allows one firing alert per endpoint and rule, and any number of resolved ones (NULLs
# never conflict in a unique key, on SQLite as on PostgreSQL).
alerts = Table(
    "alerts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("endpoint", String(255), nullable=False),
    Column("rule", String(255), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("state", String(16), nullable=False),  # firing | resolved
    Column("firing", Integer),
    Column("started_at", String(40), nullable=False),
    Column("resolved_at", String(40)),
    Column("value", Double),
    Column("last_value", Double),
    Column("summary", Text, nullable=False),
    Column("acknowledged_by", String(255)),
    Column("acknowledged_at", String(40)),
    UniqueConstraint("endpoint", "rule", "firing", name="uq_alerts_firing"),
    Index("ix_alerts_started_at", "started_at"),
    Index("ix_alerts_endpoint_started_at", "endpoint", "started_at"),
)

# 0008: intents (services.actions.intents_sql): what an action is about to do, written before it touches anything and
# closed when it is done; one left unfinished by a stopped process is what "needs repair" shows and repairs.
action_intents = Table(
    "action_intents",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("endpoint", String(255), nullable=False),
    Column("model", String(255)),
    Column("action", String(64), nullable=False),
    Column("actor", String(255), nullable=False),
    Column("approved_by", String(255)),
    Column("request_id", Integer),
    Column("plan_hash", String(64), nullable=False),
    Column("plan", Text, nullable=False),  # canonical JSON: label, params, before, after, registry_changes
    Column("state", String(16), nullable=False),  # open | abandoned | repairing | done | not_applied | repaired
    Column("step", String(64), nullable=False),
    Column("note", Text, nullable=False),
    Column("owner", Text, nullable=False),  # JSON: host, pid, boot_id, started
    Column("started_at", String(40), nullable=False),
    Column("updated_at", String(40), nullable=False),
    Column("lease_until", String(40), nullable=False),
    Column("closed_at", String(40)),
    Column("row_version", Integer, nullable=False),
    Index("ix_action_intents_state_endpoint", "state", "endpoint"),
)

# 0009: the gateway's worker processes per endpoint and version over time (services.serving.local.record_replicas)
replica_samples = Table(
    "replica_samples",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("endpoint", String(255), nullable=False),
    Column("version", String(32), nullable=False),
    Column("at", String(40), nullable=False),
    Column("replicas", Integer, nullable=False),
    Column("in_flight", Integer, nullable=False),
    Index("ix_replica_samples_endpoint_at", "endpoint", "at"),
)

# 0010: a retraining of an endpoint being started (services.retraining.leases_sql): at most one at a time
retrain_leases = Table(
    "retrain_leases",
    metadata,
    Column("endpoint", String(255), primary_key=True),
    Column("holder", String(255), nullable=False),
    Column("taken_at", String(40), nullable=False),
    Column("until", String(40), nullable=False),
)

LEGACY_TABLES = ("endpoints", "endpoint_revisions", "approval_requests", "audit_log")  # revision 0001

_version_metadata = MetaData()
alembic_version = Table(  # Alembic's own bookkeeping, as Alembic creates it
    "alembic_version", _version_metadata,
    Column("version_num", String(32), nullable=False),
    PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)
