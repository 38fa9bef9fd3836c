"""Shared UI pieces: the one error renderer, guards, tables with downloads, plan views, dialogs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
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


def table(df: pd.DataFrame, *, key: str, file_name: str, **kwargs) -> Any:
    """A dataframe with a CSV download button under it."""
    out = st.dataframe(df, key=key, hide_index=True, **kwargs)
    st.download_button("Download CSV", df.to_csv(index=False).encode("utf-8"), file_name=file_name,
                       mime="text/csv", key=f"{key}-download", icon=":material/download:")
    return out


def fmt_time(dt) -> str:
    return dt.strftime("%Y-%m-%d %H:%M UTC") if dt else "—"


def fmt_num(x) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.4g}" if abs(x) < 1e5 else f"{x:,.0f}"
    return str(x)


def refresh_button(where=st.sidebar) -> None:
    if where.button("Refresh data", key=state.REFRESH, icon=":material/refresh:",
                    help="Reads are cached for 30 s; this fetches everything again now."):
        st.cache_data.clear()
        st.rerun()
