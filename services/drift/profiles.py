"""Reference profiles as use cases: derive a version's fixed bins once and store them in the prediction log.

- :func:`ensure_profile`: the stored profile, or one built from the version's training data (the frame its run
  logged as ``reference/train.parquet``). The prediction log's SQL adapter calls it (through the composition
  root) the first time it writes a row of a version without a profile, so histograms start with its traffic.
- :func:`profile_from_window`: a version whose reference is a baseline window of the prediction log (no
  training data in the registry). Profiles are derived once: profile such a version *before* its traffic
  should be binned; a version that already has one keeps it (its histograms stay comparable).
- ``python -m services profile --model M --version V [--endpoint E --from … --to …] [--json]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from services.clock import iso
from services.drift.bins import PREDICTION, Profile, build_profile
from services.errors import ConsoleError, Invalid, NotFound

SOURCE = "reference profile"


Predict = Callable[[str, str, object], Sequence]  # (model, version, features frame) -> the version's answers


def ensure_profile(log, registry, model: str, version: str, *, predict: Predict | None = None) -> Profile:
    """The version's stored profile, else one derived from its training data and stored (first one wins).
    With ``predict``, the version's own answers on that data are its prediction reference (else its target)."""
    stored = log.profile(model, str(version))
    if stored is not None:
        return stored
    frame = registry.reference_data(model, str(version), "train")
    artifact = getattr(registry, "REFERENCE_ARTIFACTS", {}).get("train", "training data")
    source = f"training data ({artifact})"
    if predict is not None and "prediction" not in frame.columns:
        try:
            answers = predict(model, str(version), frame.drop(columns=["target"], errors="ignore"))
            frame = frame.assign(prediction=list(answers))
            source += f"; answers: v{version}'s own on it"
        except ConsoleError as exc:
            source += f"; answers: its target (v{version} could not be loaded: {exc.message})"
    return log.save_profile(build_profile(model, str(version), frame, source=source))


def profile_from_window(log, model: str, version: str, endpoint: str, start: datetime, end: datetime) -> Profile:
    """A profile from the answered requests of ``version`` on ``endpoint`` in ``[start, end)`` (features and
    predictions), stored unless the version has one already (then that one is returned)."""
    import pandas as pd

    if start >= end:
        raise Invalid("the baseline window starts after it ends", source=SOURCE)
    stored = log.profile(model, str(version))
    if stored is not None:
        return stored
    rows = [r for r in log.rows(endpoint, start=start, end=end, limit=0)
            if r.version == str(version) and r.ok and not r.error]
    if not rows:
        raise NotFound(f"no answered request of v{version} on {endpoint!r} between {iso(start)} and {iso(end)}",
                       source=SOURCE)
    frame = pd.DataFrame([r.features for r in rows])
    frame["prediction"] = [r.prediction for r in rows]
    return log.save_profile(build_profile(model, str(version), frame,
                                          source=f"baseline window {iso(start)} … {iso(end)} of {endpoint}"))


def profile_rows(profile: Profile) -> list[dict]:
    """One plain row per column (features, then the prediction): kind, bins and the reference's counts."""
    cols = [*profile.columns.values(), *([profile.prediction] if profile.prediction else [])]
    return [{"column": "prediction" if b.column == PREDICTION else b.column, "kind": b.kind, "bins": b.size,
             "labels": b.labels(), "reference": list(b.reference), "missing": b.reference_missing,
             "mean": b.mean, "std": b.std} for b in cols]


# -- CLI -------------------------------------------------------------------------------------------------
def cmd_profile(c, args) -> int:
    from services.cli_output import emit, table
    from services.metrics import parse_time

    if args.endpoint:
        now = c.clock()
        end = parse_time(args.to, now=now, end=True, what="--to") or now
        start = parse_time(args.from_, now=now, what="--from")
        if start is None:
            raise Invalid("a baseline window needs --from (and optionally --to)", source=SOURCE)
        profile = profile_from_window(c.predictions, args.model, args.version, args.endpoint, start, end)
    else:
        profile = ensure_profile(c.predictions, c.registry, args.model, args.version)
    rows = profile_rows(profile)
    text = "\n".join([f"{profile.model} v{profile.version}: {profile.rows} reference rows from {profile.source}",
                      table(["COLUMN", "KIND", "BINS", "MISSING", "REFERENCE COUNTS"],
                            [[r["column"], r["kind"], r["bins"], r["missing"], " ".join(map(str, r["reference"]))]
                             for r in rows])])
    emit(args, {**profile.as_dict(), "table": rows}, text)
    return 0


def add_command(sub, common) -> None:
    sp = sub.add_parser("profile", parents=[common],
                        help="a version's reference profile (fixed bins), derived once and stored")
    sp.add_argument("--model", required=True)
    sp.add_argument("--version", required=True)
    sp.add_argument("--endpoint", help="derive it from a baseline window of this endpoint's prediction log")
    sp.add_argument("--from", dest="from_", metavar="WHEN", help="start of the baseline window")
    sp.add_argument("--to", metavar="WHEN", help="end of the baseline window (default now)")
    sp.set_defaults(fn=cmd_profile)
