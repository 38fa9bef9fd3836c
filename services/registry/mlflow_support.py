"""What the MLflow adapter and the demo seed share: error translation, paging, exact-name filters, and the
reference frames a run logged.

Every MLflow / transport failure becomes the console's error vocabulary with
``source="MLflow registry"`` (:func:`translate`, :func:`guard`).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from services.breaker import is_timeout
from services.errors import ConsoleError, Invalid, NotFound, Unavailable

SOURCE = "MLflow registry"
# Fail fast when a server is down instead of MLflow's minutes of back-off (7 retries, exponential), and give a
# hung server 5 s per request (MLflow's default is 120 s): a page that reads the registry answers within 10 s.
# A server that timed out is not asked again for a while (the registry adapter's Breaker), so one page pays
# one timeout, not one per call. Both can be raised in the environment for a slow server.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")


def ts(ms: int | None) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, tz=UTC) if ms else None


def name_filter(name: str) -> str | None:
    """An exact ``name = ...`` filter for MLflow, or None if the name cannot be quoted.

    MLflow's parser has no escape for a quote inside a string of the same
    quote, so we pick the quote character the name does not contain.
    ``%`` and ``_`` are harmless with ``=`` (only LIKE treats them as wildcards).
    """
    if "'" not in name:
        return f"name = '{name}'"
    if '"' not in name:
        return f'name = "{name}"'
    return None


def translate(exc: BaseException, what: str, *, doing: str = "reading") -> ConsoleError:
    """Map an exception raised by MLflow or its transport to the vocabulary (``doing`` ``what`` failed)."""
    if isinstance(exc, ConsoleError):
        return exc
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException):
        code = getattr(exc, "error_code", "")
        msg = exc.message if hasattr(exc, "message") else str(exc)
        if code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
            return NotFound(f"{what} does not exist in the registry", source=SOURCE, detail=short(msg))
        if code in ("INVALID_PARAMETER_VALUE", "BAD_REQUEST", "INVALID_STATE"):
            return Invalid(f"{what}: {short(msg)}", source=SOURCE)
        if "API request" in msg or "Max retries" in msg or "Connection" in msg:
            return Unavailable(f"{_transport_failure(exc, msg)} while {doing} {what}", source=SOURCE,
                               detail=short(msg))
        return Unavailable(f"{what}: {short(msg)}", source=SOURCE)
    name = type(exc).__name__
    if name in ("OperationalError", "DatabaseError", "ProgrammingError", "ArgumentError"):
        return Unavailable(f"the MLflow store cannot be opened while {doing} {what}", source=SOURCE,
                           detail=short(str(exc)))
    if isinstance(exc, OSError) or "Connection" in name or "Timeout" in name:
        return Unavailable(f"{_transport_failure(exc, str(exc))} while {doing} {what}", source=SOURCE,
                           detail=short(str(exc)))
    return Unavailable(f"unexpected error while {doing} {what}: {name}", source=SOURCE, detail=short(str(exc)))


def _transport_failure(exc: BaseException, msg: str) -> str:
    """What went wrong between us and the MLflow server, in words: no answer in time, an HTTP error status,
    or no connection at all."""
    if is_timeout(exc):
        return f"the MLflow server did not answer within {os.environ.get('MLFLOW_HTTP_REQUEST_TIMEOUT', '?')} s"
    status = re.search(r"too many (\d{3}) error responses|error code (\d{3})", msg)
    if status:
        return f"the MLflow server answered HTTP {status.group(1) or status.group(2)}"
    return "cannot reach the MLflow server"


REFERENCE_ARTIFACTS = {"train": "reference/train.parquet", "eval": "reference/eval.parquet"}


def load_reference_data(tracking_uri: str, run_id: str, artifact_path: str = REFERENCE_ARTIFACTS["train"], *,
                        what: str | None = None):
    """The exact frame (features + ``target``) run ``run_id`` logged at ``artifact_path`` (a parquet file).

    ``what`` names the data in errors (default: the run). NotFound when the run or the file does not exist.
    """
    import mlflow.artifacts
    import pandas as pd

    if not run_id or not str(run_id).isalnum():
        raise Invalid(f"not a run id: {run_id!r}", source=SOURCE)
    what = what or f"run {run_id}"
    folder, _, file_name = artifact_path.rpartition("/")
    with guard(f"reference data of {what}"), tempfile.TemporaryDirectory() as tmp:
        files = {Path(f.path).name for f in
                 mlflow.artifacts.list_artifacts(run_id=run_id, artifact_path=folder or None,
                                                 tracking_uri=tracking_uri)}
        if file_name not in files:
            raise NotFound(f"{what} logged no {artifact_path}", source=SOURCE)
        local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact_path, dst_path=tmp,
                                                    tracking_uri=tracking_uri)
        return pd.read_parquet(local)


def short(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@contextmanager
def guard(what: str) -> Iterator[None]:
    try:
        yield
    except ConsoleError:
        raise
    except Exception as exc:  # noqa: BLE001 - this is the translation boundary
        raise translate(exc, what) from exc


def paged(call: Callable, **kwargs) -> list:
    out: list = []
    token = None
    while True:
        page = call(page_token=token, **kwargs)
        out.extend(page)
        token = getattr(page, "token", None)
        if not token:
            return out


def schema_cols(schema) -> tuple[tuple[str, str], ...]:
    if schema is None:
        return ()
    out = []
    for i, col in enumerate(schema.inputs):
        name = getattr(col, "name", None) or f"[{i}]"
        ctype = getattr(col, "type", None)
        out.append((name, getattr(ctype, "name", None) or str(ctype)))
    return tuple(out)


def check_local_store(uri: str) -> None:
    """Fail at once for a SQLite store that cannot be opened (MLflow would retry for minutes)."""
    if not uri.startswith("sqlite:///"):
        return
    path = Path(uri[len("sqlite:///"):].split("?", 1)[0])
    if path.is_dir():
        raise Unavailable(f"the MLflow store {path} is a directory, not a SQLite file", source=SOURCE)
    if not path.parent.is_dir():
        raise Unavailable(f"the folder of the MLflow store {path} does not exist", source=SOURCE)
