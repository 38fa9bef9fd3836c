"""KServe serving backend: each endpoint is an ``InferenceService`` (``serving.kserve.io/v1beta1``).

One room per concern (details in ``docs/kserve.md``):

* :mod:`~services.serving.kserve.mapping` — pure reading: InferenceService → :class:`Endpoint`, the
  console's annotations, storage-URI matching, deployment modes, revisions;
* :mod:`~services.serving.kserve.patches` — pure writing: the JSON-patch bodies of each change in
  Serverless and Standard mode (:func:`plan_writes`, :func:`precondition`, :func:`build_patches`);
* :mod:`~services.serving.kserve.client` — the Kubernetes API calls, timeouts, and the translation of
  409/422/403/404/5xx into :mod:`services.errors`;
* :mod:`~services.serving.kserve.backend` — :class:`KServeBackend`, the adapter of the serving port.
"""

from services.serving.kserve.backend import KServeBackend
from services.serving.kserve.mapping import IsvcView, Resolver, deployment_mode, endpoint_from_isvc, view_isvc
from services.serving.kserve.patches import (
    RV_FROM_PREVIOUS_WRITE,
    build_patches,
    canary_entry,
    plan_writes,
    precondition,
)

__all__ = [
    "RV_FROM_PREVIOUS_WRITE",
    "IsvcView",
    "KServeBackend",
    "Resolver",
    "build_patches",
    "canary_entry",
    "deployment_mode",
    "endpoint_from_isvc",
    "plan_writes",
    "precondition",
    "view_isvc",
]
