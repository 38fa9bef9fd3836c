"""KServe's V1 and Open Inference Protocol (V2) JSON bodies: parsing against a signature, and answers (pure).

A parsed request is a :class:`Batch`: columns in signature order, one list of values per feature, all of
the same length. Every problem with a request is a :class:`ProtocolError` carrying its HTTP status and a
message a client can act on (which instance, which feature, what was expected).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

Columns = tuple[tuple[str, str], ...]  # the signature's inputs: (name, type)

NUMBER_TYPES = {"double", "float"}
INTEGER_TYPES = {"long", "integer"}
TEXT_TYPES = {"string", "binary", "datetime"}
V2_NUMERIC = {f"INT{b}" for b in (8, 16, 32, 64)} | {f"UINT{b}" for b in (8, 16, 32, 64)}
V2_FLOATS = {"FP16", "FP32", "FP64"}
V2_DATATYPES = V2_NUMERIC | V2_FLOATS | {"BOOL", "BYTES"}


class ProtocolError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Batch:
    columns: Columns  # () when the model has no column signature: rows are passed as given
    data: dict[str, list]  # feature -> values (signature order)
    rows: int
    raw_rows: list | None = None  # only without a signature

    def records(self) -> list[dict]:
        names = [n for n, _ in self.columns]
        return [dict(zip(names, vals, strict=True)) for vals in zip(*(self.data[n] for n in names), strict=True)]


def _names(columns: Columns) -> str:
    return ", ".join(repr(n) for n, _ in columns)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "list" if isinstance(value, list) else "object"


def check_value(value: Any, ctype: str) -> Any:
    """The value as the model takes it, or ValueError naming what was expected."""
    if ctype in NUMBER_TYPES:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ValueError(f"must be a number ({ctype})")
    if ctype in INTEGER_TYPES:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ValueError(f"must be a whole number ({ctype})")
    if ctype == "boolean":
        if isinstance(value, bool):
            return value
        raise ValueError("must be true or false (boolean)")
    if ctype in TEXT_TYPES:
        if isinstance(value, str):
            return value
        raise ValueError(f"must be a string ({ctype})")
    if value is None:
        raise ValueError(f"must not be null ({ctype})")
    return value  # a type we do not know: MLflow's own schema enforcement has the last word


def _value_error(where: str, name: str, value: Any, exc: ValueError) -> ProtocolError:
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    return ProtocolError(400, f"{where}: feature {name!r} {exc}, got {_type_name(value)} {shown}")


def check_batch_size(n: int, max_batch: int) -> None:
    if n == 0:
        raise ProtocolError(400, "the request has no instances")
    if n > max_batch:
        raise ProtocolError(413, f"the batch has {n} instances, more than the {max_batch} allowed "
                                 "(MLOPS_GATEWAY_MAX_BATCH): split it")


# --------------------------------------------------------------------------- V1

def parse_v1(body: Any, columns: Columns, *, max_batch: int) -> Batch:
    """``{"instances": [...]}``: each instance a list in signature order or an object keyed by feature."""
    if not isinstance(body, dict) or not isinstance(body.get("instances"), list):
        raise ProtocolError(400, 'a V1 request is a JSON object {"instances": [...]}')
    instances = body["instances"]
    check_batch_size(len(instances), max_batch)
    if not columns:
        return Batch((), {}, len(instances), raw_rows=instances)
    names = [n for n, _ in columns]
    known = set(names)
    data: dict[str, list] = {n: [] for n in names}
    for i, inst in enumerate(instances):
        where = f"instance {i}"
        if isinstance(inst, list):
            if len(inst) != len(columns):
                raise ProtocolError(400, f"{where} has {len(inst)} values, the model takes {len(columns)}: "
                                         f"{_names(columns)}")
            values = inst
        elif isinstance(inst, dict):
            # Features the model does not take are ignored (a shared feature pipeline may send more, as
            # MLflow's own schema enforcement allows); a missing one is an error, naming a likely misspelling.
            missing = [n for n in names if n not in inst]
            if missing:
                unknown = [k for k in inst if k not in known]
                hint = f"; unknown feature {unknown[0]!r}: misspelt?" if unknown else ""
                raise ProtocolError(400, f"{where}: missing feature {missing[0]!r} (the model takes "
                                         f"{_names(columns)}){hint}")
            values = [inst[n] for n in names]
        else:
            raise ProtocolError(400, f"{where} must be a list in signature order or an object keyed by "
                                     f"feature, got {_type_name(inst)}")
        for (name, ctype), value in zip(columns, values, strict=True):
            try:
                data[name].append(check_value(value, ctype))
            except ValueError as exc:
                raise _value_error(where, name, value, exc) from None
    return Batch(columns, data, len(instances))


def v1_response(predictions: Sequence) -> dict:
    return {"predictions": list(predictions)}


# --------------------------------------------------------------------------- V2

def _flatten(data: Any) -> list:
    if not isinstance(data, list):
        raise ProtocolError(400, "an input's data must be a JSON list")
    if data and isinstance(data[0], list):
        out: list = []
        for row in data:
            out.extend(_flatten(row) if isinstance(row, list) else [row])
        return out
    return data


def _shape(inp: dict, where: str) -> list[int]:
    shape = inp.get("shape")
    if (not isinstance(shape, list) or not shape
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
        raise ProtocolError(400, f"{where}: shape must be a list of non-negative integers, got {shape!r}")
    return shape


def _check_datatype(where: str, name: str, datatype: Any, ctype: str) -> None:
    if datatype not in V2_DATATYPES:
        raise ProtocolError(400, f"{where}: unknown datatype {datatype!r} (one of {', '.join(sorted(V2_DATATYPES))})")
    ok = ((ctype in NUMBER_TYPES and datatype in V2_FLOATS | V2_NUMERIC)
          or (ctype in INTEGER_TYPES and datatype in V2_NUMERIC)
          or (ctype == "boolean" and datatype == "BOOL")
          or (ctype in TEXT_TYPES and datatype == "BYTES")
          or ctype not in NUMBER_TYPES | INTEGER_TYPES | TEXT_TYPES | {"boolean"})
    if not ok:
        raise ProtocolError(400, f"{where}: datatype {datatype} does not fit feature {name!r} ({ctype})")


def _checked(values: list, name: str, ctype: str, where: str) -> list:
    out = []
    for i, value in enumerate(values):
        try:
            out.append(check_value(value, ctype))
        except ValueError as exc:
            raise _value_error(f"{where}, element {i}", name, value, exc) from None
    return out


def parse_v2(body: Any, columns: Columns, *, max_batch: int) -> Batch:
    """Open Inference Protocol JSON: one input per feature (shape ``[n]``, as MLServer's pandas codec
    sends it), or one ``[n, k]`` tensor in signature order."""
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list) or not body["inputs"]:
        raise ProtocolError(400, 'a V2 request is a JSON object {"inputs": [{"name", "shape", "datatype", '
                                 '"data"}, ...]}')
    inputs = body["inputs"]
    for j, inp in enumerate(inputs):
        if not isinstance(inp, dict) or not isinstance(inp.get("name"), str):
            raise ProtocolError(400, f"input {j} must be an object with a name, shape, datatype and data")
    names = [n for n, _ in columns]
    if len(inputs) == 1:
        shape = _shape(inputs[0], f"input {inputs[0]['name']!r}")
        if len(shape) == 2 and (inputs[0]["name"] not in names or (len(columns) > 1 and shape[1] == len(columns))):
            return _parse_tensor(inputs[0], columns, max_batch)
    if not columns:  # no column signature: take the inputs' own names
        columns = tuple((inp["name"], "any") for inp in inputs)
    return _parse_per_feature(inputs, columns, max_batch)


def _parse_tensor(inp: dict, columns: Columns, max_batch: int) -> Batch:
    where = f"input {inp['name']!r}"
    shape = _shape(inp, where)
    flat = _flatten(inp.get("data"))
    k = shape[1] if len(shape) == 2 else 1
    if len(shape) > 2:
        raise ProtocolError(400, f"{where}: a tensor input has shape [n, k], got {shape}")
    if shape[0] * k != len(flat):
        raise ProtocolError(400, f"{where}: shape {shape} needs {shape[0] * k} values, data has {len(flat)}")
    check_batch_size(shape[0], max_batch)
    rows = [flat[r * k:(r + 1) * k] for r in range(shape[0])]
    if not columns:
        return Batch((), {}, shape[0], raw_rows=rows)
    if k != len(columns):
        raise ProtocolError(400, f"{where}: a tensor of shape {shape} has {k} columns, the model takes "
                                 f"{len(columns)}: {_names(columns)}")
    data = {}
    for c, (name, ctype) in enumerate(columns):
        _check_datatype(where, name, inp.get("datatype"), ctype)
        data[name] = _checked([row[c] for row in rows], name, ctype, where)
    return Batch(columns, data, shape[0])


def _parse_per_feature(inputs: list, columns: Columns, max_batch: int) -> Batch:
    types = dict(columns)
    seen: dict[str, dict] = {}
    unknown = []
    for inp in inputs:
        if inp["name"] in seen:
            raise ProtocolError(400, f"input {inp['name']!r} is sent twice")
        if inp["name"] not in types:
            unknown.append(inp["name"])  # ignored, as MLflow's schema enforcement does, unless one is missing
            continue
        seen[inp["name"]] = inp
    missing = [n for n, _ in columns if n not in seen]
    if missing:
        hint = (f"; unknown input {unknown[0]!r}: send one input per feature or one [n, {len(columns)}] tensor"
                if unknown else "")
        raise ProtocolError(400, f"missing input for feature {missing[0]!r} (the model takes {_names(columns)})"
                                 + hint)
    n_rows = None
    data = {}
    for name, ctype in columns:
        inp = seen[name]
        where = f"input {name!r}"
        shape = _shape(inp, where)
        if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
            raise ProtocolError(400, f"{where}: a per-feature input has shape [n] (or [n, 1]), got {shape}")
        flat = _flatten(inp.get("data"))
        if len(flat) != shape[0]:
            raise ProtocolError(400, f"{where}: shape {shape} needs {shape[0]} values, data has {len(flat)}")
        if n_rows is None:
            n_rows = shape[0]
            check_batch_size(n_rows, max_batch)
        elif shape[0] != n_rows:
            raise ProtocolError(400, f"{where} has {shape[0]} rows, the other inputs have {n_rows}")
        _check_datatype(where, name, inp.get("datatype"), ctype)
        data[name] = _checked(flat, name, ctype, where)
    return Batch(columns, data, n_rows or 0)


def v2_datatype(values: Sequence) -> str:
    """The V2 datatype of a list of plain JSON values."""
    if all(isinstance(v, bool) for v in values):
        return "BOOL"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "INT64"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return "FP64"
    return "BYTES"


def v2_response(endpoint: str, version: str, request_id: str, predictions: Sequence) -> dict:
    data = list(predictions)
    shape = [len(data)]
    flat = data
    if data and isinstance(data[0], list):  # several outputs per row: an [n, m] tensor
        shape = [len(data), len(data[0])]
        flat = [v for row in data for v in row]
    return {"model_name": endpoint, "model_version": str(version), "id": request_id,
            "outputs": [{"name": "predict", "shape": shape, "datatype": v2_datatype(flat), "data": flat}]}


def request_id_of(body: Any, fallback: str) -> str:
    """A V2 request's own ``id`` when it sent one."""
    rid = body.get("id") if isinstance(body, dict) else None
    return rid if isinstance(rid, str) and rid else fallback
