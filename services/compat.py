"""Input compatibility between two versions of a model: will clients of one break on the other?

Used by the dry runs (start a canary, re-weight it, promote, roll back) and by the Deployments page
while a canary runs. The comparison itself is :func:`signature_gaps` (pure); :func:`input_warnings`
reads the two signatures through the registry port.
"""

from __future__ import annotations

from services.errors import ConsoleError
from services.history import signature_diff
from services.registry import ModelRegistry, Signature


def signature_gaps(serving: Signature | None, other: Signature | None, serving_version: str,
                   other_version: str) -> dict[str, list[str]]:
    """Pure: input columns ``other`` needs that ``serving``'s clients do not send (``missing``), columns it no
    longer reads (``unused``), and columns whose type differs (``retyped``, as "name: a → b")."""
    gaps: dict[str, list[str]] = {"missing": [], "unused": [], "retyped": []}
    if serving is None or other is None:
        return gaps
    for row in signature_diff({serving_version: serving, other_version: other}):
        if row["section"] != "inputs" or row["status"] == "same":
            continue
        name = row["column"]
        if row["status"] == "added":
            gaps["missing"].append(f"{name} ({row[other_version]})")
        elif row["status"] == "removed":
            gaps["unused"].append(name)
        else:
            gaps["retyped"].append(f"{name}: {row[serving_version]} → {row[other_version]}")
    return gaps


def describe_gaps(gaps: dict[str, list[str]], serving_version: str, other_version: str, role: str) -> list[str]:
    """Pure: the warnings a person must read, naming the exact columns."""
    out = []
    if gaps["missing"]:
        out.append(f"{role} v{other_version} needs input columns that clients of v{serving_version} do not send: "
                   f"{', '.join(gaps['missing'])}; requests routed to it will fail")
    if gaps["retyped"]:
        out.append(f"{role} v{other_version} expects other types than v{serving_version}: "
                   f"{', '.join(gaps['retyped'])}")
    if gaps["unused"]:
        out.append(f"{role} v{other_version} ignores input columns v{serving_version} reads: "
                   f"{', '.join(gaps['unused'])}")
    return out


def input_warnings(registry: ModelRegistry, model: str, serving_version: str | None, other_version: str,
                   role: str) -> list[str]:
    """Warnings when ``other_version`` (the canary, or the new stable) cannot take what clients of
    ``serving_version`` send. Never raises: a registry problem becomes a warning too."""
    if not serving_version or serving_version == other_version:
        return []
    try:
        cur = registry.signature(model, serving_version)
        new = registry.signature(model, other_version)
    except ConsoleError as exc:
        return [f"could not compare the input signatures of v{serving_version} and v{other_version}: "
                f"{exc.message}"]
    if cur is None or new is None:
        which = f"v{serving_version}" if cur is None else f"v{other_version}"
        return [f"{which} has no signature; whether {role.lower()} v{other_version} accepts what clients of "
                f"v{serving_version} send is unknown"]
    return describe_gaps(signature_gaps(cur, new, serving_version, other_version), serving_version, other_version,
                         role)
