"""The demo's endpoints, created on a serving backend that can create endpoints (the local one)."""

from __future__ import annotations

from collections.abc import Callable

from services.registry import ModelRegistry
from services.serving import ServingBackend

# endpoint name -> (registered model, canary alias or None, canary weight); stable is the champion
DEMO_ENDPOINTS = {
    "cancer-screening": ("breast-cancer-classifier", "challenger", 20),
    "diabetes-risk": ("diabetes-regressor", None, 0),
}


def create_demo_endpoints(registry: ModelRegistry, serving: ServingBackend, say: Callable[[str], None]
                          ) -> list[str]:
    """Create each demo endpoint that does not exist yet (champion stable, alias canary); their names.

    Nothing on a backend whose endpoints come from elsewhere (``serving.creates_endpoints`` false)."""
    created: list[str] = []
    if not serving.creates_endpoints:
        return created
    for ep_name, (model, canary_alias, weight) in DEMO_ENDPOINTS.items():
        m = registry.get_model(model)
        stable = m.aliases.get("champion")
        canary = m.aliases.get(canary_alias) if canary_alias else None
        if stable and serving.ensure_endpoint(ep_name, model, stable, canary_version=canary,
                                              canary_weight=weight if canary else 0):
            created.append(ep_name)
            say(f"endpoint {ep_name}: stable v{stable}" + (f", canary v{canary} at {weight}%" if canary else ""))
    return created
