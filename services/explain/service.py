"""The explanation use cases over the registry and the prediction log, with an in-process LRU of results.

Models are loaded the way the gateway loads them (:meth:`services.gateway.models.ModelCache.load_blocking`:
the version's real files, the skops trusted-types allow-list, pickle refused unless allowed), then the
fitted estimator is explained. Backgrounds are seeded samples of the version's training reference
(``reference_data(kind="train")``), samples its held-out frame (``kind="eval"``) or given rows. Results are
kept per (model, version, sample key, class), so a second view of the same thing costs a dictionary look-up.
"""

from __future__ import annotations

import hashlib
import shutil
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from services.errors import Invalid, NotFound, Unavailable
from services.explain import (
    AGNOSTIC_BACKGROUND_ROWS,
    AGNOSTIC_SAMPLE_ROWS,
    BACKGROUND_ROWS,
    SAMPLE_ROWS,
    SEED,
    SOURCE,
    Explanation,
    background_sample,
)
from services.explain.explainers import AGNOSTIC, TREE, Progress, explain, feature_names, kind_of, split_pipeline

TARGET = "target"  # the label column of the reference frames


@dataclass(frozen=True)
class LoadedEstimator:
    """A registry version as something to explain: the fitted estimator and the input columns it takes."""

    estimator: Any
    columns: tuple[str, ...]


class _PyfuncPredictor:
    """A non-scikit-learn pyfunc model, explained model-agnostically through its ``predict``."""

    def __init__(self, pyfunc):
        self._pyfunc = pyfunc

    def predict(self, x):
        import numpy as np

        out = self._pyfunc.predict(x)
        return np.asarray(getattr(out, "values", out), dtype=float).reshape(len(x), -1)[:, 0]


class RegistryModels:
    """Loads registry versions through the gateway's model loading (fetch, trusted types), keeps the last few."""

    def __init__(self, registry, *, tracking_uri: str | None = None, size: int = 8, env: dict | None = None):
        from services.gateway import GatewayConfig
        from services.gateway.models import TRUSTED_SKOPS_TYPES, ModelCache

        config = GatewayConfig.from_env(env)  # MLOPS_GATEWAY_SKOPS_TRUSTED, MLOPS_GATEWAY_ALLOW_PICKLE
        self._files = ModelCache(registry, tracking_uri=tracking_uri or getattr(registry, "tracking_uri", None),
                                 trusted=TRUSTED_SKOPS_TYPES | config.skops_trusted, allow_pickle=config.allow_pickle)
        weakref.finalize(self, self._files.close)  # its download folder goes with it
        self._kept: OrderedDict[tuple[str, str], LoadedEstimator] = OrderedDict()
        self._size = max(1, size)
        self._lock = threading.Lock()

    def __call__(self, model: str, version: str) -> LoadedEstimator:
        from services.gateway.models import ModelLoadError

        key = (model, str(version))
        with self._lock:
            if key in self._kept:
                self._kept.move_to_end(key)
                return self._kept[key]
        try:
            loaded = self._files.load_blocking(model, str(version))
        except ModelLoadError as exc:
            raise Unavailable(f"cannot load {model!r} v{version}: {exc}", source=SOURCE) from exc
        shutil.rmtree(loaded.path, ignore_errors=True)  # in memory now
        raw = loaded.pyfunc.get_raw_model() if hasattr(loaded.pyfunc, "get_raw_model") else None
        estimator = raw if hasattr(raw, "predict") else _PyfuncPredictor(loaded.pyfunc)
        out = LoadedEstimator(estimator, tuple(n for n, _ in loaded.columns))
        with self._lock:
            self._kept[key] = out
            while len(self._kept) > self._size:
                self._kept.popitem(last=False)
        return out


def rows_key(rows) -> str:
    """A short content key of a frame (columns, values), for the results cache."""
    import pandas as pd

    h = hashlib.sha1("\x1f".join(map(str, rows.columns)).encode())
    h.update(pd.util.hash_pandas_object(rows, index=False).to_numpy().tobytes())
    return h.hexdigest()[:16]


def _features_only(frame):
    return frame.drop(columns=[TARGET]) if TARGET in frame.columns else frame


class Explainer:
    """The explanation use cases for one registry (see the module docstring)."""

    def __init__(self, registry, *, models: Callable[[str, str], LoadedEstimator] | None = None,
                 cache_size: int = 32):
        self.registry = registry
        self.models = models or RegistryModels(registry)
        self._results: OrderedDict[tuple, Explanation] = OrderedDict()
        self._size = max(1, cache_size)
        self._lock = threading.Lock()

    # -- the cache -------------------------------------------------------------------------------------------
    @staticmethod
    def version_key(model: str, version: str, kind: str = "eval", target_class=None) -> tuple:
        """The cache key of :meth:`explain_version`'s result (``cached(version_key(...))``: is it ready?)."""
        return (model, str(version), f"reference:{kind}", target_class)

    def cached(self, key: tuple) -> Explanation | None:
        with self._lock:
            hit = self._results.get(key)
            if hit is not None:
                self._results.move_to_end(key)
            return hit

    def _keep(self, key: tuple, value: Explanation) -> Explanation:
        with self._lock:
            self._results[key] = value
            self._results.move_to_end(key)
            while len(self._results) > self._size:
                self._results.popitem(last=False)
        return value

    # -- building blocks -----------------------------------------------------------------------------------
    def _reference(self, model: str, version: str, kind: str):
        try:
            return self.registry.reference_data(model, str(version), kind=kind)
        except NotFound as exc:
            raise NotFound(f"{model!r} v{version} has no {'training' if kind == 'train' else 'held-out'} "
                           f"reference data to explain with ({exc.message})", source=exc.source) from exc

    def _compute(self, model: str, version: str, rows, *, sample: str, target_class=None,
                 progress: Progress | None = None, row_ids=None) -> Explanation:
        say = progress or (lambda _f, _t: None)
        say(0.0, f"loading {model} v{version}")
        loaded = self.models(model, str(version))
        kind = kind_of(split_pipeline(loaded.estimator)[1])
        if kind == TREE:
            background, described, n_bg = None, ("the training data as the trees recorded it (the training rows "
                                                 "that reached each node): path-dependent TreeSHAP needs no "
                                                 "background sample"), 0
        else:
            n = AGNOSTIC_BACKGROUND_ROWS if kind == AGNOSTIC else BACKGROUND_ROWS
            say(0.02, f"reading v{version}'s training reference")
            train = _features_only(self._reference(model, version, "train"))
            background = background_sample(train, n, SEED)
            n_bg = len(background)
            described = f"{n_bg} rows of v{version}'s training reference (seeded sample, seed {SEED})"
        exp = explain(loaded.estimator, rows, background, columns=list(loaded.columns) or None,
                      target_class=target_class, background_rows=n_bg, progress=progress,
                      meta={"model": model, "version": str(version), "background": described, "sample": sample})
        if row_ids is not None:
            exp = replace(exp, row_ids=tuple(row_ids))
        say(1.0, "done")
        return exp

    def input_columns(self, model: str, version: str) -> list[str]:
        loaded = self.models(model, str(version))
        return feature_names(loaded.estimator, list(loaded.columns) or None)

    # -- use cases -------------------------------------------------------------------------------------------
    def explain_version(self, model: str, version: str, *, kind: str = "eval", target_class=None,
                        progress: Progress | None = None) -> Explanation:
        """The version on its own held-out frame (``eval``; or its training frame, ``train``), at most
        :data:`SAMPLE_ROWS` rows (:data:`AGNOSTIC_SAMPLE_ROWS` for the model-agnostic explainer), seeded."""
        if kind not in ("eval", "train"):
            raise Invalid("the sample is the version's held-out (eval) or training (train) frame", source=SOURCE)
        key = self.version_key(model, version, kind, target_class)
        hit = self.cached(key)
        if hit is not None:
            return hit
        frame = _features_only(self._reference(model, version, kind))
        limit = AGNOSTIC_SAMPLE_ROWS if kind_of(split_pipeline(self.models(model, str(version)).estimator)[1]) \
            == AGNOSTIC else SAMPLE_ROWS
        what = "held-out" if kind == "eval" else "training"
        if len(frame) > limit:
            sample = f"{limit} of the {len(frame)} rows of v{version}'s {what} frame (seeded sample)"
            frame = frame.sample(n=limit, random_state=SEED)
        else:
            sample = f"the {len(frame)} rows of v{version}'s {what} frame"
        ids = list(frame.index)
        exp = self._compute(model, version, frame.reset_index(drop=True), sample=sample, target_class=target_class,
                            progress=progress, row_ids=ids)
        return self._keep(key, exp)

    def explain_rows(self, model: str, version: str, rows, *, target_class=None, sample: str | None = None,
                     progress: Progress | None = None, row_ids=None) -> Explanation:
        """Given rows (a frame with the version's input columns; others, like ``target``, are ignored)."""
        import pandas as pd

        frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
        key = (model, str(version), f"rows:{rows_key(frame)}", target_class)
        hit = self.cached(key)
        if hit is not None:
            return hit
        exp = self._compute(model, version, frame.reset_index(drop=True),
                            sample=sample or f"{len(frame)} given rows", target_class=target_class,
                            progress=progress, row_ids=row_ids if row_ids is not None else list(frame.index))
        return self._keep(key, exp)

    def logged_row(self, prediction_log, endpoint: str, request_id: str, row: int = 0):
        rows = prediction_log.rows(endpoint, request_id=str(request_id), limit=0)
        if not rows:
            raise NotFound(f"no logged prediction {request_id!r} on endpoint {endpoint!r}",
                           source=prediction_log.source)
        found = next((r for r in rows if int(r.row) == int(row)), None)
        if found is None:
            raise NotFound(f"request {request_id!r} has {len(rows)} row(s); there is no row {row}",
                           source=prediction_log.source)
        return found, len(rows)

    def explain_prediction(self, prediction_log, endpoint: str, request_id: str, *, row: int = 0,
                           model: str | None = None, progress: Progress | None = None) -> dict:
        """One logged prediction as a waterfall: base value, each feature's push, the model output; with the
        row as logged (version that answered, prediction, time)."""
        import pandas as pd

        logged, n_rows = self.logged_row(prediction_log, endpoint, request_id, row)
        name = logged.model or model
        if not name or logged.version in (None, ""):
            raise NotFound(f"the log does not say which model version answered request {request_id!r}",
                           source=prediction_log.source)
        if not logged.features:
            raise NotFound(f"request {request_id!r} was logged without its input features",
                           source=prediction_log.source)
        columns = self.input_columns(name, logged.version)
        missing = [c for c in columns if c not in logged.features]
        if missing:
            raise Invalid(f"the logged request lacks {len(missing)} input(s) v{logged.version} takes: "
                          + ", ".join(repr(m) for m in missing[:8]), source=SOURCE)
        frame = pd.DataFrame([{c: logged.features[c] for c in columns}])
        exp = self.explain_rows(name, logged.version, frame, sample=f"request {request_id} row {row} on {endpoint}",
                                progress=progress, row_ids=[f"{request_id}#{row}"])
        return {"endpoint": endpoint, "request_id": str(request_id), "row": int(row), "rows_in_request": n_rows,
                "model": name, "version": str(logged.version), "role": logged.role, "at": logged.at,
                "status": logged.status, "error": logged.error, "prediction": logged.prediction,
                "label": logged.label, "explanation": exp.describe(), "waterfall": exp.waterfall(0)}

    def common_rows(self, model: str, a: str, b: str):
        """Held-out rows both versions can take: version ``a``'s frame, else ``b``'s (the version with the
        wider input may have logged more columns)."""
        need = set(self.input_columns(model, a)) | set(self.input_columns(model, b))
        tried = []
        for v in (a, b):
            frame = _features_only(self._reference(model, v, "eval"))
            if need <= set(frame.columns):
                return frame, f"the {len(frame)} rows of v{v}'s held-out frame"
            tried.append(f"v{v}'s lacks {', '.join(sorted(need - set(frame.columns))[:3])}")
        raise Invalid("no held-out frame holds every input both versions take (" + "; ".join(tried) + ")",
                      source=SOURCE)

    def version_drift(self, model: str, a: str, b: str, *, progress: Progress | None = None) -> dict:
        """How version ``b`` uses its features against version ``a``, on the same rows."""
        from services.explain.drift import explanation_drift

        if str(a) == str(b):
            raise Invalid("compare two different versions", source=SOURCE)
        frame, sample = self.common_rows(model, str(a), str(b))
        if len(frame) > SAMPLE_ROWS:
            frame = frame.sample(n=SAMPLE_ROWS, random_state=SEED)
            sample = f"{SAMPLE_ROWS} rows (seeded sample) of " + sample.removeprefix("the ")

        def part(lo: float, hi: float) -> Progress | None:
            return None if progress is None else (lambda f, t: progress(lo + (hi - lo) * f, t))

        ex_a = self.explain_rows(model, a, frame, sample=sample, progress=part(0.0, 0.5))
        ex_b = self.explain_rows(model, b, frame, sample=sample, progress=part(0.5, 1.0))
        return explanation_drift(ex_a, ex_b)

    def production_drift(self, prediction_log, endpoint: str, model: str, version: str, start: datetime,
                         end: datetime, *, limit: int = SAMPLE_ROWS, progress: Progress | None = None) -> dict:
        """One version on its held-out reference against the rows it answered on ``endpoint`` in a window."""
        import pandas as pd

        from services.explain.drift import explanation_drift

        columns = self.input_columns(model, version)
        logged = [r for r in prediction_log.rows(endpoint, start=start, end=end, limit=limit * 5)
                  if str(r.version) == str(version) and r.ok and all(c in r.features for c in columns)]
        if not logged:
            raise NotFound(f"no logged predictions of v{version} with its inputs on {endpoint!r} in this window",
                           source=prediction_log.source)
        logged = logged[:limit]
        frame = pd.DataFrame([{c: r.features[c] for c in columns} for r in logged])
        ref = self.explain_version(model, version, progress=progress)
        prod = self.explain_rows(model, version, frame, progress=progress,
                                 sample=f"{len(frame)} predictions v{version} served on {endpoint} "
                                        f"({start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC, newest first)",
                                 row_ids=[f"{r.request_id}#{r.row}" for r in logged])
        return explanation_drift(ref, prod)


_SHARED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_SHARED_LOCK = threading.Lock()


def for_registry(registry) -> Explainer:
    """The process's explainer for a registry (one cache per registry object)."""
    with _SHARED_LOCK:
        found = _SHARED.get(registry)
        if found is None:
            found = _SHARED[registry] = Explainer(registry)
        return found


def explain_rows(registry, model: str, version: str, rows, **kw) -> Explanation:
    return for_registry(registry).explain_rows(model, version, rows, **kw)


def explain_prediction(prediction_log, registry, endpoint: str, request_id: str, *, row: int = 0, **kw) -> dict:
    return for_registry(registry).explain_prediction(prediction_log, endpoint, request_id, row=row, **kw)

