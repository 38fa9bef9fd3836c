"""Render the Kustomize base in ``deploy/`` in Python, for the manifest tests (no kubectl needed).

Implements only what ``deploy/kustomization.yaml`` uses, and refuses anything else (so a new feature there fails
loudly here instead of being ignored): ``resources`` (files), ``configMapGenerator`` (``literals`` and
``files``, with Kustomize's content-hash name suffix, computed as Kustomize v5 does) and the rewriting of the
references to generated ConfigMaps in pod specs. Where ``kubectl`` is installed, a test compares this rendering
with ``kubectl kustomize``.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
SUPPORTED = {"apiVersion", "kind", "resources", "configMapGenerator"}
POD_OWNERS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


def _go_json(obj) -> str:
    """``json.Marshal`` of Go: sorted keys, no spaces, UTF-8, HTML characters escaped."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                         ("\u2029", "\\u2029")):
        text = text.replace(raw, escaped)
    return text


def name_suffix(data: dict[str, str]) -> str:
    """Kustomize's hash suffix of a generated ConfigMap (its hasher encodes kind, data and an empty name)."""
    digest = hashlib.sha256(_go_json({"data": data, "kind": "ConfigMap", "name": ""}).encode()).hexdigest()
    return digest[:10].translate(str.maketrans({"0": "g", "1": "h", "3": "k", "a": "m", "e": "t"}))


def _generate(root: Path, spec: dict) -> dict:
    unknown = set(spec) - {"name", "namespace", "literals", "files"}
    assert not unknown, f"configMapGenerator {spec.get('name')}: unsupported {sorted(unknown)}"
    data: dict[str, str] = {}
    for literal in spec.get("literals", []):
        key, sep, value = literal.partition("=")
        assert sep, f"literal {literal!r} is not KEY=VALUE"
        data[key] = value
    for entry in spec.get("files", []):
        key, sep, path = entry.partition("=")
        if not sep:
            key, path = Path(entry).name, entry
        data[key] = (root / path).read_text(encoding="utf-8")
    md = {"name": f"{spec['name']}-{name_suffix(data)}"}
    if spec.get("namespace"):
        md["namespace"] = spec["namespace"]
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": md, "data": data}


def _rename_refs(obj: dict, names: dict[tuple[str | None, str], str]) -> None:
    if obj.get("kind") not in POD_OWNERS:
        return
    ns = obj["metadata"].get("namespace")
    spec = obj["spec"]["template"]["spec"]

    def fix(ref: dict | None) -> None:
        if ref and (ns, ref.get("name")) in names:
            ref["name"] = names[(ns, ref["name"])]

    for c in spec.get("containers", []) + spec.get("initContainers", []):
        for src in c.get("envFrom", []):
            fix(src.get("configMapRef"))
        for env in c.get("env", []):
            fix((env.get("valueFrom") or {}).get("configMapKeyRef"))
    for vol in spec.get("volumes", []):
        fix(vol.get("configMap"))
        for src in (vol.get("projected") or {}).get("sources", []):
            fix(src.get("configMap"))


def render(root: Path = DEPLOY) -> list[dict]:
    """The objects ``kubectl kustomize root`` would print (generated ConfigMaps first, then resources in order)."""
    kz = yaml.safe_load((root / "kustomization.yaml").read_text(encoding="utf-8"))
    unknown = set(kz) - SUPPORTED
    assert not unknown, f"deploy/kustomization.yaml uses {sorted(unknown)}: teach tests/kustomize.py first"
    objects: list[dict] = []
    for res in kz.get("resources", []):
        path = root / res
        assert path.is_file(), f"resource {res} is not a file (directories/URLs are not supported here)"
        objects += [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    generated = [_generate(root, spec) for spec in kz.get("configMapGenerator", [])]
    names = {(g["metadata"].get("namespace"), spec["name"]): g["metadata"]["name"]
             for g, spec in zip(generated, kz.get("configMapGenerator", []), strict=True)}
    objects = [copy.deepcopy(o) for o in objects]
    for o in objects:
        _rename_refs(o, names)
    return generated + objects


def key(obj: dict) -> tuple[str, str, str]:
    md = obj.get("metadata") or {}
    return obj.get("kind", ""), md.get("namespace") or "", md.get("name", "")
