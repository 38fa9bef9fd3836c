"""How every command prints: one JSON document with ``--json``, else text; aligned tables for people.

Command modules (``services.cli`` and the ones it registers) import these; nothing is injected."""

from __future__ import annotations

import json
from typing import Any


def emit(args, data: Any, text: str) -> None:
    if args.json:
        print(json.dumps(data, indent=2, default=str, ensure_ascii=False))
    else:
        print(text)


def table(headers: list[str], rows: list[list[Any]], notes: list[list[str]] | None = None) -> str:
    """Columns padded to their widest cell (the last one is not padded); "—" for a missing value; each
    row's ``notes`` are printed indented under it."""
    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values: list[str]) -> str:
        return "  ".join([*(v.ljust(w) for v, w in zip(values[:-1], widths[:-1], strict=True)), values[-1]])

    out = [line(list(headers))]
    for i, row in enumerate(cells):
        out.append(line(row))
        out += [f"    {n}" for n in (notes[i] if notes else [])]
    return "\n".join(out)


def cell(value: Any) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        return "—"
    return " ".join(str(value).split())  # one line per row, whatever the text holds
