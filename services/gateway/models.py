"""Loading registered model versions with MLflow pyfunc, once each, kept warm; frames from parsed batches.

A version's files are downloaded from its real artifact location (the registry port's ``storage_uri``,
through the tracking URI from settings) and loaded with ``mlflow.pyfunc.load_model``. Loading a model
runs code from its files, so before loading:

* a scikit-learn model saved with **skops** (MLflow 3's default) must hold no type outside the gateway's
  own allow-list: skops lists the types it would refuse (``skops.io.get_untrusted_types``) without loading
  anything, and every one must be in :data:`TRUSTED_SKOPS_TYPES` (plus ``MLOPS_GATEWAY_SKOPS_TRUSTED``).
  The model's own ``skops_trusted_types`` (written by ``mlflow.sklearn.log_model``, and what pyfunc hands
  to ``skops.io.load``) are not trusted by themselves: a crafted model could list anything there;
* pickle / cloudpickle models (scikit-learn's other formats, python_function models) are refused unless
  ``MLOPS_GATEWAY_ALLOW_PICKLE=true``.

Loads run in a worker thread (the event loop never waits on one), one at a time per version: concurrent
requests for a version that is loading await the same load.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool

from services.gateway.protocols import Batch, Columns

log = logging.getLogger("services.gateway")

# Types skops refuses by default that scikit-learn models legitimately hold (the demo's tree models log
# exactly these; services/demo/training.py vets them at training time).
TRUSTED_SKOPS_TYPES = frozenset({
    "sklearn.tree._tree.Tree",  # DecisionTree*, RandomForest*, GradientBoosting*
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",  # HistGradientBoosting*
})

_NUMPY_DTYPES = {"double": "float64", "float": "float32", "long": "int64", "integer": "int32", "boolean": "bool"}


class ModelLoadError(Exception):
    """A version that cannot be served (files missing, refused, broken)."""


@dataclass
class LoadedModel:
    model: str
    version: str
    columns: Columns  # the signature's inputs; () when it has none
    pyfunc: Any
    path: Path

    def predict(self, batch: Batch) -> list:
        return outputs_to_list(self.pyfunc.predict(to_frame(batch)))


def to_frame(batch: Batch):
    """The pandas frame the model takes: columns in signature order with the signature's dtypes."""
    import pandas as pd

    if not batch.columns or all(t == "any" for _, t in batch.columns):
        if batch.raw_rows is not None:
            rows = batch.raw_rows
            return pd.DataFrame(rows) if rows and isinstance(rows[0], dict) else pd.DataFrame(rows)
        return pd.DataFrame(batch.data)
    import numpy as np

    names = [n for n, _ in batch.columns]
    dtypes = {_NUMPY_DTYPES.get(t, t) for _, t in batch.columns}
    if len(dtypes) == 1 and next(iter(dtypes)) in _NUMPY_DTYPES.values():  # one numeric dtype: one 2-D block
        block = np.array([batch.data[n] for n in names], dtype=next(iter(dtypes))).T
        return pd.DataFrame(block, columns=names)
    out = {}
    for name, ctype in batch.columns:
        values = batch.data[name]
        if ctype == "datetime":
            out[name] = pd.to_datetime(pd.Series(values))
        else:
            out[name] = np.asarray(values, dtype=_NUMPY_DTYPES.get(ctype, "object"))
    return pd.DataFrame(out)


def outputs_to_list(pred: Any) -> list:
    """Model output (ndarray, Series, DataFrame, list) as plain JSON values, one per row."""
    import numpy as np
    import pandas as pd

    if isinstance(pred, pd.DataFrame):
        pred = pred.iloc[:, 0].to_numpy() if pred.shape[1] == 1 else pred.to_numpy()
    elif isinstance(pred, pd.Series):
        pred = pred.to_numpy()
    if isinstance(pred, np.ndarray):
        return pred.tolist()
    return [v.item() if hasattr(v, "item") else v for v in pred]


def check_trusted(model_dir: Path, trusted: frozenset[str], *, allow_pickle: bool) -> None:
    """Refuse a model whose files would load types we did not vet (see the module docstring)."""
    import yaml

    meta = yaml.safe_load((model_dir / "MLmodel").read_text()) or {}
    flavors = meta.get("flavors") or {}
    sk = flavors.get("sklearn")
    pyfunc = flavors.get("python_function") or {}
    if sk is not None:
        fmt = sk.get("serialization_format", "pickle")
        if fmt == "skops":
            import skops.io

            file = model_dir / sk.get("pickled_model", "model.skops")
            untrusted = set(skops.io.get_untrusted_types(file=str(file)))
            refused = sorted(untrusted - trusted)
            if refused:
                raise ModelLoadError(f"the model holds types the gateway does not trust: {', '.join(refused)} "
                                     "(vet them, then add them to MLOPS_GATEWAY_SKOPS_TRUSTED)")
            return
        if not allow_pickle:
            raise ModelLoadError(f"the model is saved as {fmt}, which runs arbitrary code when loaded: "
                                 "log it with serialization_format='skops', or set MLOPS_GATEWAY_ALLOW_PICKLE=true")
        return
    if pyfunc.get("loader_module") == "mlflow.pyfunc.model" and not allow_pickle:
        raise ModelLoadError("the model is a cloudpickled python_function model, which runs arbitrary code "
                             "when loaded: set MLOPS_GATEWAY_ALLOW_PICKLE=true to serve it")


def load_local(model_dir: Path, *, model: str, version: str, columns: Columns, trusted: frozenset[str],
               allow_pickle: bool = False) -> LoadedModel:
    """Check and load a model directory already on disk (blocking)."""
    import mlflow.pyfunc

    check_trusted(model_dir, trusted, allow_pickle=allow_pickle)
    try:
        pyfunc = mlflow.pyfunc.load_model(str(model_dir))
    except Exception as exc:  # noqa: BLE001 - any failure of the flavor's loader: the version cannot serve
        raise ModelLoadError(f"MLflow could not load it: {type(exc).__name__}: {str(exc)[:300]}") from exc
    return LoadedModel(model, version, columns, pyfunc, model_dir)


class ModelCache:
    """Loaded versions, least recently used dropped past ``size``; each version loaded once."""

    def __init__(self, registry, *, tracking_uri: str | None, trusted: frozenset[str] = TRUSTED_SKOPS_TYPES,
                 allow_pickle: bool = False, size: int = 16, workdir: Path | None = None):
        self.registry = registry
        self.tracking_uri = tracking_uri
        self.trusted = trusted
        self.allow_pickle = allow_pickle
        self.size = max(1, size)
        self._dir = Path(workdir or tempfile.mkdtemp(prefix="mlops-gateway-"))
        self._models: OrderedDict[tuple[str, str], LoadedModel] = OrderedDict()
        self._loading: dict[tuple[str, str], asyncio.Future] = {}

    def loaded(self, model: str, version: str) -> bool:
        return (model, str(version)) in self._models

    def peek(self, model: str, version: str) -> LoadedModel | None:
        return self._models.get((model, str(version)))

    async def get(self, model: str, version: str) -> LoadedModel:
        key = (model, str(version))
        hit = self._models.get(key)
        if hit is not None:
            self._models.move_to_end(key)
            return hit
        pending = self._loading.get(key)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            self._loading[key] = pending
            try:
                loaded = await run_in_threadpool(self.load_blocking, *key)
            except BaseException as exc:  # noqa: BLE001 - waiters of the same load must hear of it too
                err = exc if isinstance(exc, ModelLoadError) else ModelLoadError(
                    f"{type(exc).__name__}: {str(exc)[:300]}")
                pending.set_exception(err)
                pending.exception()  # retrieved: no "never retrieved" warning when nobody else waited
                raise err from None
            finally:
                self._loading.pop(key, None)
            self._models[key] = loaded
            while len(self._models) > self.size:
                _, old = self._models.popitem(last=False)
                shutil.rmtree(old.path, ignore_errors=True)
            pending.set_result(loaded)
            return loaded
        return await asyncio.shield(pending)

    def load_blocking(self, model: str, version: str) -> LoadedModel:
        """Fetch, check and load one version now, in this thread, without keeping it (``get`` keeps it; the
        explanations load through here too). Its files stay under the cache's folder until ``close``."""
        import mlflow.artifacts

        from services.errors import ConsoleError

        try:
            detail = self.registry.get_version_detail(model, version)
        except ConsoleError as exc:
            raise ModelLoadError(f"{exc.source}: {exc.message}") from exc
        location = detail.artifact_location or self.registry.storage_uri(model, version)
        columns = tuple(detail.signature.inputs) if detail.signature else ()
        if any(name.startswith("[") for name, _ in columns):  # a tensor signature: no named columns
            columns = ()
        dest = Path(tempfile.mkdtemp(prefix=f"v{version}-", dir=self._dir))
        try:
            local = mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=str(dest),
                                                        tracking_uri=self.tracking_uri)
            loaded = load_local(Path(local), model=model, version=str(version), columns=columns,
                                trusted=self.trusted, allow_pickle=self.allow_pickle)
        except ModelLoadError:
            shutil.rmtree(dest, ignore_errors=True)
            raise
        except Exception as exc:  # noqa: BLE001 - the files are missing or unreadable
            shutil.rmtree(dest, ignore_errors=True)
            raise ModelLoadError(f"cannot fetch the model files from {location}: "
                                 f"{type(exc).__name__}: {str(exc)[:300]}") from exc
        log.info("loaded %s v%s from %s", model, version, location)
        return loaded

    def close(self) -> None:
        self._models.clear()
        shutil.rmtree(self._dir, ignore_errors=True)
