"""In-repo Kubernetes API double (see :mod:`tests.k8s_double.server`) and its pytest fixtures.

Use the fixtures from a test module with::

    pytest_plugins = ("tests.k8s_double.fixtures",)
"""

from tests.k8s_double.server import (
    ISVC_PLURAL,
    JSON_PATCH,
    KSERVE_GROUP,
    KSERVE_VERSION,
    MERGE_PATCH,
    STRATEGIC_MERGE_PATCH,
    KubeDouble,
    PatchError,
    RecordedRequest,
    apply_json_patch,
    merge_patch,
)

__all__ = [
    "ISVC_PLURAL", "JSON_PATCH", "KSERVE_GROUP", "KSERVE_VERSION", "MERGE_PATCH", "STRATEGIC_MERGE_PATCH",
    "KubeDouble", "PatchError", "RecordedRequest", "apply_json_patch", "merge_patch",
]
