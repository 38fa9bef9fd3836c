"""Pytest fixtures for the Kubernetes API double.

Load them from a test module (or the root ``conftest.py``) with::

    pytest_plugins = ("tests.k8s_double.fixtures",)

* ``crd_schemas`` (session): ``{"v0.19.0": schema, "v0.20.0": schema}``, the
  KServe InferenceService ``openAPIV3Schema`` of each CRD in ``deploy/crds`` (vendored).
* ``check_isvc`` (session): ``check_isvc(obj, versions=("v0.19.0", "v0.20.0"))``
  asserts ``obj`` is valid against each CRD schema (Draft 7) and has no key
  the schema does not define.
* ``k8s_double_factory``: ``make(crd="v0.20.0" | "v0.19.0" | None)`` starts a
  :class:`~tests.k8s_double.server.KubeDouble` enforcing that CRD (pruning +
  validation; ``None``: no schema); all are stopped at teardown.
* ``k8s_double``: a started double enforcing the v0.20.0 CRD.
* ``k8s_api_client``: a real ``kubernetes.client.ApiClient`` for ``k8s_double``.
"""

from __future__ import annotations

import pytest

from tests.k8s_double.crd import (
    KSERVE_CRD_VERSIONS,
    kserve_crd_path,
    load_crd_schema,
    schema_errors,
    undefined_keys,
    validator,
)
from tests.k8s_double.server import ISVC_PLURAL, KSERVE_GROUP, KubeDouble


@pytest.fixture(scope="session")
def crd_schemas() -> dict[str, dict]:
    return {v: load_crd_schema(str(kserve_crd_path(v))) for v in KSERVE_CRD_VERSIONS}


@pytest.fixture(scope="session")
def check_isvc(crd_schemas):
    validators = {v: validator(s) for v, s in crd_schemas.items()}

    def check(obj: dict, versions: tuple[str, ...] = KSERVE_CRD_VERSIONS) -> None:
        problems = []
        for v in versions:
            problems += [f"[{v}] {e}" for e in schema_errors(obj, validators[v])]
            problems += [f"[{v}] undefined key {k}" for k in undefined_keys(obj, crd_schemas[v])]
        assert not problems, "InferenceService does not fit the CRD:\n" + "\n".join(problems)

    return check


@pytest.fixture
def k8s_double_factory(crd_schemas):
    started: list[KubeDouble] = []

    def make(crd: str | None = "v0.20.0") -> KubeDouble:
        schemas = {(KSERVE_GROUP, ISVC_PLURAL): crd_schemas[crd]} if crd else {}
        double = KubeDouble(schemas=schemas).start()
        started.append(double)
        return double

    yield make
    for double in started:
        double.stop()


@pytest.fixture
def k8s_double(k8s_double_factory) -> KubeDouble:
    return k8s_double_factory("v0.20.0")


@pytest.fixture
def k8s_api_client(k8s_double):
    client = k8s_double.api_client()
    yield client
    client.close()
