"""The embedded demo: seed the registry (if empty and local) and the local endpoints."""

from __future__ import annotations

from collections.abc import Callable

from services.composition import Container
from services.errors import PreconditionFailed

# endpoint name -> (registered model, canary version or None, canary weight)
DEMO_ENDPOINTS = {
    "cancer-screening": ("breast-cancer-classifier", "challenger", 20),
    "diabetes-risk": ("diabetes-regressor", None, 0),
}


def seed_demo(c: Container, *, progress: Callable[[str], None] | None = None, allow_remote: bool = False) -> dict:
    """Idempotent. Registers demo models, then creates the demo endpoints on the local backend."""
    from services.demo_registry import seed_registry

    say = progress or (lambda _m: None)
    s = c.settings
    if not s.registry_is_local and not allow_remote:
        raise PreconditionFailed(f"refusing to seed a remote registry ({s.mlflow_tracking_uri}); pass "
                                 "--allow-remote to do it anyway", source="demo")
    s.data_dir.mkdir(parents=True, exist_ok=True)
    summary = seed_registry(s.mlflow_tracking_uri, s.artifact_root.as_uri(), progress=say)
    created = []
    if c.serving.name == "local":
        for ep_name, (model, canary_alias, weight) in DEMO_ENDPOINTS.items():
            m = c.registry.get_model(model)
            stable = m.aliases.get("champion")
            canary = m.aliases.get(canary_alias) if canary_alias else None
            if stable and c.serving.ensure_endpoint(ep_name, model, stable, canary_version=canary,
                                                    canary_weight=weight if canary else 0):
                created.append(ep_name)
                say(f"endpoint {ep_name}: stable v{stable}" + (f", canary v{canary} at {weight}%" if canary else ""))
    summary["endpoints_created"] = created
    return summary


def needs_seed(c: Container) -> bool:
    from services.demo_registry import registry_is_empty

    if not c.settings.registry_is_local:
        return False
    c.settings.data_dir.mkdir(parents=True, exist_ok=True)
    if registry_is_empty(c.settings.mlflow_tracking_uri):
        return True
    return c.serving.name == "local" and not c.serving.list_endpoints()
