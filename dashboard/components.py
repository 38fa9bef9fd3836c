"""Shared UI pieces: the one error renderer, guards, tables with downloads, plan views, dialogs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import pandas as pd
import streamlit as st

from dashboard import state
from services.errors import ConsoleError

ICONS = {"not_found": ":material/search_off:", "conflict": ":material/sync_problem:",
         "precondition_failed": ":material/block:", "permission_denied": ":material/lock:",
         "unavailable": ":material/cloud_off:", "invalid": ":material/error:"}
TITLES = {"not_found": "Not found", "conflict": "Changed meanwhile", "precondition_failed": "Refused",
          "permission_denied": "Not allowed", "unavailable": "Unavailable", "invalid": "Invalid input"}


def show_error(exc: BaseException, *, where: str | None = None) -> None:
    """The one renderer for errors: what failed, which source, why. Never a traceback."""
    if isinstance(exc, ConsoleError):
        title = TITLES.get(exc.kind, "Error")
        st.error(f"**{title}** — {exc.message}\n\nSource: **{exc.source}**",
                 icon=ICONS.get(exc.kind, ":material/error:"))
        if exc.detail:
            with st.expander("Details"):
                st.code(exc.detail, language=None)
    else:
        st.error(f"**Unexpected error{' in ' + where if where else ''}** — {type(exc).__name__}: "
                 f"{str(exc)[:300]}\n\nSource: **console**", icon=":material/error:")


@contextmanager
def guard(where: str | None = None) -> Iterator[None]:
    """Render any error raised in the block with :func:`show_error`; the rest of the page goes on."""
    try:
        yield
    except ConsoleError as exc:
        show_error(exc, where=where)
    except Exception as exc:  # noqa: BLE001 - pages never show a traceback (st.rerun/st.stop are BaseException)
        show_error(exc, where=where)


def flash() -> None:
    """Show (once) the message left by an action before the rerun."""
    msg = st.session_state.pop(state.FLASH, None)
    if msg:
        kind, text = msg
        icon = ":material/check_circle:" if kind == "ok" else ":material/outgoing_mail:"
        (st.success if kind == "ok" else st.info)(text, icon=icon)


def table(df: pd.DataFrame, *, key: str, file_name: str, csv: Callable[[], pd.DataFrame] | None = None,
          **kwargs) -> Any:
    """A dataframe with a CSV download button under it. The CSV (of ``df``, or of the frame ``csv()`` returns:
    e.g. every row when the table shows some) is written when the button is clicked, not on every run, and
    the click does not rerun the page."""
    out = st.dataframe(df, key=key, hide_index=True, **kwargs)
    st.download_button("Download CSV", lambda: (csv() if csv else df).to_csv(index=False).encode("utf-8"),
                       file_name=file_name, mime="text/csv", key=f"{key}-download", icon=":material/download:",
                       on_click="ignore")
    return out


MISSING = "—"
DATETIME_FORMAT = "YYYY-MM-DD HH:mm [UTC]"  # st.column_config.DatetimeColumn(format=...) everywhere
TIME_FORMAT = "%Y-%m-%d %H:%M UTC"  # fmt_time: the same, as text


def is_missing(x) -> bool:
    """None, NaN, NaT, pd.NA and empty or blank strings."""
    if x is None:
        return True
    if isinstance(x, str):
        return not x.strip()
    try:
        return bool(pd.isna(x))
    except (TypeError, ValueError):  # lists, dicts, arrays: not a scalar, so not missing
        return False


def fmt_missing(x, fmt=None) -> Any:
    """``—`` for a missing value; else ``fmt(x)`` (when given) or ``x`` itself."""
    if is_missing(x):
        return MISSING
    return fmt(x) if fmt else x


def fmt_time(dt) -> str:
    """``YYYY-MM-DD HH:MM UTC`` for a datetime, pandas Timestamp or ISO-8601 text (naive means UTC); ``—`` if
    missing."""
    if is_missing(dt):
        return MISSING
    try:
        ts = pd.Timestamp(dt)
    except (TypeError, ValueError):
        return str(dt)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.strftime(TIME_FORMAT)


def fmt_num(x, precision: int | None = None) -> str:
    """A number as short text (``precision`` decimals when given); ``—`` if missing."""
    if is_missing(x):
        return MISSING
    if isinstance(x, bool):
        return str(x)
    if precision is not None and isinstance(x, int | float):
        return f"{x:.{precision}f}"
    if isinstance(x, float):
        return f"{x:.4g}" if abs(x) < 1e5 else f"{x:,.0f}"
    return str(x)


def clean_frame(df: pd.DataFrame, *, precision: int = 4) -> pd.DataFrame:
    """A copy for display where no cell reads "None"/"nan" (st.dataframe shows missing cells as "None").

    Datetime columns become ``fmt_time`` text; numeric columns that have missing values become text with
    ``precision`` decimals (show them right-aligned: :func:`frame_config`); other missing cells become ``—``.
    Complete numeric columns stay numbers.
    """
    out = df.copy()
    for c in out.columns:
        col = out[c]
        if pd.api.types.is_datetime64_any_dtype(col):
            out[c] = [fmt_time(x) for x in col]
        elif pd.api.types.is_bool_dtype(col):
            continue
        elif pd.api.types.is_numeric_dtype(col):
            if col.isna().any():
                known = col.dropna()
                integral = pd.api.types.is_integer_dtype(col) or bool(len(known) and (known == known.round()).all())
                out[c] = [fmt_num(x, None if integral else precision) for x in col]
        else:
            out[c] = [fmt_time(x) if isinstance(x, datetime | pd.Timestamp) else fmt_missing(x) for x in col]
    return out


def frame_config(df: pd.DataFrame, numbers: list[str] | tuple[str, ...] = (), *, precision: int = 4) -> dict:
    """Column configs for ``numbers`` of a :func:`clean_frame` output: numeric ones formatted with
    ``precision`` decimals, ones that became text right-aligned like numbers."""
    cfg = {}
    for c in numbers:
        if c not in df.columns:
            continue
        if pd.api.types.is_numeric_dtype(df[c]):
            cfg[c] = st.column_config.NumberColumn(c, format=f"%.{precision}f")
        else:
            cfg[c] = st.column_config.TextColumn(c, alignment="right")
    return cfg


def refresh_button(where=st.sidebar) -> None:
    if where.button("Refresh data", key=state.REFRESH, icon=":material/refresh:",
                    help="Reads are shared between sessions and re-read in the background every 5–60 s; "
                         "this reads everything again now."):
        from dashboard.data import clear_caches

        clear_caches()
        st.rerun()
