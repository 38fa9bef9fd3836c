"""CRD schema helpers: load an ``openAPIV3Schema``, validate, find and prune undefined keys.

The KServe CRD schemas do not reject unknown fields (a real API server silently
*prunes* them), so a field misspelt by the adapter would be dropped without an
error. :func:`undefined_keys` reports such keys and :func:`prune` drops them the
way the API server does (structural pruning), honouring
``x-kubernetes-preserve-unknown-fields`` and ``additionalProperties``.
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path

import yaml
from jsonschema import Draft7Validator

REPO_ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = REPO_ROOT / "deploy" / "crds"  # vendored; see deploy/crds/README.md
KSERVE_CRD_VERSIONS = ("v0.19.0", "v0.20.0")

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def kserve_crd_path(version: str) -> Path:
    return CRD_DIR / f"kserve-inferenceservices-{version}.yaml"


@cache
def load_crd_schema(path: str | Path, served_version: str = "v1beta1") -> dict:
    """The ``openAPIV3Schema`` of ``served_version`` in the CRD file (cached; slow for KServe)."""
    with open(path, encoding="utf-8") as fh:
        for doc in yaml.load_all(fh, Loader=_Loader):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            for ver in doc["spec"]["versions"]:
                if ver["name"] == served_version:
                    return ver["schema"]["openAPIV3Schema"]
    raise LookupError(f"{path}: no CRD version {served_version}")


def validator(schema: dict) -> Draft7Validator:
    """CRD schemas are OpenAPI v3.0 subsets; the keywords KServe uses mean the same in Draft 7."""
    return Draft7Validator(schema)


def schema_errors(obj: dict, schema_validator: Draft7Validator) -> list[str]:
    """Human-readable schema violations, ``path: message``, sorted."""
    out = []
    for err in schema_validator.iter_errors(obj):
        path = ".".join(str(p) for p in err.absolute_path) or "<root>"
        out.append(f"{path}: {err.message}")
    return sorted(out)


def _walk(obj, schema: dict, path: str, out: list[str], prune: bool, root: bool) -> None:
    if not isinstance(schema, dict):
        return
    if isinstance(obj, dict):
        props = schema.get("properties")
        addl = schema.get("additionalProperties")
        preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
        for key in list(obj):
            sub = f"{path}.{key}" if path else key
            if props and key in props:
                if root and key == "metadata":
                    continue  # ObjectMeta: the API server owns it, the CRD only says "object"
                _walk(obj[key], props[key], sub, out, prune, False)
            elif isinstance(addl, dict):
                _walk(obj[key], addl, sub, out, prune, False)
            elif addl is True or preserve:
                continue
            else:
                out.append(sub)
                if prune:
                    del obj[key]
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(obj):
            _walk(item, schema["items"], f"{path}[{i}]", out, prune, False)


def undefined_keys(obj: dict, schema: dict) -> list[str]:
    """Dotted paths of keys in ``obj`` that ``schema`` does not define (``metadata`` is not checked)."""
    out: list[str] = []
    _walk(obj, schema, "", out, prune=False, root=True)
    return out


def prune(obj: dict, schema: dict) -> tuple[dict, list[str]]:
    """A copy of ``obj`` without the undefined keys, and their paths (what the API server drops)."""
    pruned = copy.deepcopy(obj)
    out: list[str] = []
    _walk(pruned, schema, "", out, prune=True, root=True)
    return pruned, out
