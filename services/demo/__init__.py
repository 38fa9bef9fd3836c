"""The embedded demo: a realistic MLflow registry seeded from datasets shipped inside scikit-learn, and the
demo endpoints on the local serving backend.

* :mod:`~services.demo.specs` — the two models, their versions, the quality gates;
* :mod:`~services.demo.datasets` — the scikit-learn data, the fixed split, feature sets, reference frames;
* :mod:`~services.demo.training` — training each version and logging its run;
* :mod:`~services.demo.register` — registering versions, aliases and tags (``seed_registry``), idempotently;
* :mod:`~services.demo.endpoints` — the demo endpoints (:data:`DEMO_ENDPOINTS`).

The seed takes explicit ports and values, never the whole container. Nothing is downloaded; seeding takes a
few seconds. The reference frames each run logs are read back by the registry port's ``reference_data``.
"""

from __future__ import annotations

from collections.abc import Callable

from services.demo.endpoints import DEMO_ENDPOINTS, create_demo_endpoints
from services.demo.register import registry_is_empty, seed_registry
from services.demo.specs import DEMO_MODELS
from services.errors import PreconditionFailed
from services.registry import ModelRegistry
from services.serving import ServingBackend
from services.settings import Settings

__all__ = ["DEMO_ENDPOINTS", "DEMO_MODELS", "needs_seed", "registry_is_empty", "seed_demo", "seed_registry"]


def seed_demo(settings: Settings, registry: ModelRegistry, serving: ServingBackend, *,
              progress: Callable[[str], None] | None = None, allow_remote: bool = False) -> dict:
    """Idempotent. Registers the demo models, then creates the demo endpoints where the backend can."""
    say = progress or (lambda _m: None)
    if not settings.registry_is_local and not allow_remote:
        raise PreconditionFailed(f"refusing to seed a remote registry ({settings.mlflow_tracking_uri}); pass "
                                 "--allow-remote to do it anyway", source="demo")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    summary = seed_registry(settings.mlflow_tracking_uri, settings.artifact_root.as_uri(), progress=say)
    summary["endpoints_created"] = create_demo_endpoints(registry, serving, say)
    return summary


def needs_seed(settings: Settings, serving: ServingBackend) -> bool:
    """True for a local registry that is empty, or whose demo endpoints are missing on a backend that
    creates endpoints."""
    if not settings.registry_is_local:
        return False
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if registry_is_empty(settings.mlflow_tracking_uri):
        return True
    return serving.creates_endpoints and not serving.list_endpoints()
