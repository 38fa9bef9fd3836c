"""A frontend-less Streamlit client: one websocket session speaking Streamlit's own protocol.

It does what the browser's frontend does for a page load, without rendering: it opens
``/_stcore/stream``, sends a ``BackMsg`` ``rerun_script`` whose ``ClientState`` carries the query
string and the page (``page_name`` = the URL path on the first load, like a typed-in URL;
``page_script_hash`` afterwards, like a click in the navigation), and reads ``ForwardMsg``s until
the run's ``script_finished``. Each run is returned as a :class:`Run`: the elements it drew
(kind and text, by delta path, so a later delta to the same place replaces an earlier one), the
exceptions it showed (``new_element.exception``: an uncaught error or a Streamlit API error),
the page ``st.navigation`` resolved, the query string the script left, and the wall time from
the request to ``script_finished``.

Uses ``websockets`` (a dependency of Streamlit itself, so it is always installed) on asyncio, so
many sessions can run concurrently from one thread::

    async with StreamlitSession(app_url) as s:
        run = await s.open("/models?model=breast-cancer-classifier")
        run.raise_for_errors()
        print(run.headings, run.seconds)
        again = await s.rerun()

Widgets, as the frontend drives them: every widget a run drew is in ``run.widgets`` by its ``key`` (Streamlit
embeds the user key in the element id; a widget without a key is listed by its id). ``set(key, value)`` and
``click(key)`` send a ``rerun_script`` whose ``ClientState`` carries ``widget_states`` — the values this client
set on widgets still drawn (what the frontend keeps) plus the change, a button's click as a one-off trigger — and
``fragment_id`` when the widget was drawn by a fragment (``st.fragment``, ``st.dialog``): then only the fragment
reruns and the elements of the rest of the page are kept. ``dismiss()`` closes the open dialog (its trigger)::

    await s.open("/deployments?endpoint=cancer-screening")
    await s.set("dev-identity", "alice")          # an option, or the one option that starts with it
    run = await s.click("action-canary")          # the dry run opens in a dialog: run.dialogs
    await s.set("reason", "load test")
    run = await s.click("confirm")
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState
from streamlit.runtime.state.common import user_key_from_element_id
from websockets.asyncio.client import ClientConnection, connect

STREAM_PATH = "/_stcore/stream"
DEFAULT_TIMEOUT = 60.0
_FINISHED = ForwardMsg.ScriptFinishedStatus
_TEXT_FIELDS = ("body", "label", "message", "code_text")
OK_STATUSES = ("FINISHED_SUCCESSFULLY", "FINISHED_FRAGMENT_RUN_SUCCESSFULLY")


class StreamlitProtocolError(AssertionError):
    """The server did not behave as a page load expects (timeout, closed socket, unexpected message)."""


@dataclass
class Element:
    kind: str  # the Element oneof: "heading", "markdown", "alert", "exception", "page_link", ...
    text: str
    detail: str = ""  # alert format, exception type, heading tag, page_link target

    def __str__(self) -> str:
        return f"{self.kind}{f'[{self.detail}]' if self.detail else ''}: {self.text}"


@dataclass
class Widget:
    """A widget as a run drew it: enough to set it the way the frontend would."""

    key: str  # the user key (or the element id when the widget has none)
    id: str  # the element id the server registered it under
    kind: str  # the Element oneof: "selectbox", "button", "button_group" (segmented control, pills), ...
    label: str = ""
    options: list[str] = field(default_factory=list)  # as shown (format_func applied)
    disabled: bool = False
    help: str = ""
    fragment_id: str = ""  # the fragment (st.fragment, st.dialog) that drew it: a change reruns only that
    proto: Any = None  # the element's own message (e.g. NumberInput: default, value, min, max)

    @property
    def value(self) -> Any:
        """The value this run drew the widget with: the server's when it set one (``set_value``), else its
        default (None for a widget without either); a select box's is its shown option. What the person sees
        may be a value set before (the frontend keeps it): :meth:`StreamlitSession.value`."""
        p, fields = self.proto, self.proto.DESCRIPTOR.fields_by_name if self.proto is not None else {}
        if "set_value" in fields and p.set_value:
            return p.raw_value if "raw_value" in fields else getattr(p, "value", None)
        if "default" not in fields:
            return None
        if self.kind in ("selectbox", "radio"):
            return self.options[p.default] if p.HasField("default") and p.default < len(self.options) else None
        if self.kind in ("button_group", "multiselect"):  # indices of the chosen options
            return [self.options[i] for i in p.default if i < len(self.options)]
        return p.default

    def option(self, value: Any) -> str:
        """The shown option ``value`` names: itself, or the one option that starts with it (``"alice"`` for
        ``"alice · operator, requester"``)."""
        text = str(value)
        if text in self.options:
            return text
        found = [o for o in self.options if o.startswith(text)]
        if len(found) != 1:
            raise StreamlitProtocolError(f"widget {self.key!r}: {text!r} names {len(found)} of its options "
                                         f"{self.options}")
        return found[0]


@dataclass
class Dialog:
    title: str
    is_open: bool
    id: str  # set when the dialog can be dismissed with a rerun (on_dismiss)


@dataclass
class Run:
    """One script run as the client saw it."""

    path: str  # what was asked for, e.g. "/models?model=x"
    status: str = ""  # script_finished status name; "" if the run never finished
    page_script_hash: str = ""  # the page st.navigation resolved (Navigation.page_script_hash)
    page_not_found: bool = False
    query_string: str = ""  # after the run (st.query_params changes arrive as page_info_changed)
    elements: dict[tuple[int, ...], Element] = field(default_factory=dict)
    compile_errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    reruns: int = 0  # st.rerun() inside the run: FINISHED_EARLY_FOR_RERUN, then a new run
    widgets: dict[str, Widget] = field(default_factory=dict)  # by key (see Widget.key)
    dialogs: dict[tuple[int, ...], Dialog] = field(default_factory=dict)  # st.dialog blocks, by delta path
    fragment_id: str = ""  # the run was this fragment's (the rest of the page kept from before)
    bytes_received: int = 0

    @property
    def open_dialog(self) -> Dialog | None:
        return next((d for d in self.dialogs.values() if d.is_open), None)

    def of(self, kind: str) -> list[Element]:
        return [e for e in self.elements.values() if e.kind == kind]

    @property
    def headings(self) -> list[str]:
        return [e.text for e in self.of("heading")]

    @property
    def exceptions(self) -> list[str]:
        return [f"{e.detail}: {e.text}" for e in self.of("exception")]

    @property
    def error_alerts(self) -> list[str]:
        """``st.error`` boxes (the console renders handled errors this way)."""
        return [e.text for e in self.of("alert") if e.detail == "ERROR"]

    @property
    def problems(self) -> list[str]:
        out = [f"exception {x}" for x in self.exceptions] + [f"st.error {x}" for x in self.error_alerts]
        out += [f"compile error {x}" for x in self.compile_errors]
        if self.page_not_found:
            out.append("page not found")
        if self.status not in OK_STATUSES:
            out.append(f"script finished with {self.status or 'nothing'}")
        return out

    def raise_for_errors(self) -> None:
        if self.problems:
            raise AssertionError(f"{self.path}: " + "; ".join(self.problems))

    def texts(self) -> str:
        return "\n".join(str(e) for e in self.elements.values())


def split_path(path: str) -> tuple[str, str]:
    """``"/models?model=x"`` -> ``("models", "model=x")``; ``"/"`` -> ``("", "")`` (the default page)."""
    parts = urlsplit(path)
    return parts.path.strip("/"), parts.query


def _element(el) -> Element:
    kind = el.WhichOneof("type") or ""
    sub = getattr(el, kind) if kind else None
    text = ""
    for name in _TEXT_FIELDS:
        if sub is not None and name in sub.DESCRIPTOR.fields_by_name and getattr(sub, name):
            text = getattr(sub, name)
            break
    detail = ""
    if kind == "alert":
        detail = type(sub).Format.Name(sub.format)
    elif kind == "exception":
        detail = sub.type
    elif kind == "heading":
        detail = sub.tag
    elif kind == "page_link":
        detail = sub.page + (f"?{sub.query_string}" if sub.query_string else "")
    return Element(kind, text, detail)


def _widget(el, fragment_id: str) -> Widget | None:
    """The widget an element is, if it is one (its message has an ``id``)."""
    kind = el.WhichOneof("type") or ""
    sub = getattr(el, kind) if kind else None
    if sub is None or "id" not in sub.DESCRIPTOR.fields_by_name or not sub.id:
        return None
    fields = sub.DESCRIPTOR.fields_by_name
    options: list[str] = []
    if "options" in fields:
        options = [o if isinstance(o, str) else o.content for o in sub.options]
    key = user_key_from_element_id(sub.id) or sub.id
    return Widget(key, sub.id, kind, label=getattr(sub, "label", ""), options=options,
                  disabled=bool(getattr(sub, "disabled", False)), help=getattr(sub, "help", ""),
                  fragment_id=fragment_id, proto=sub)


def widget_state(w: Widget, value: Any = None, *, click: bool = False) -> WidgetState:
    """The ``WidgetState`` the frontend sends for ``w`` set to ``value`` (or clicked)."""
    ws = WidgetState(id=w.id)
    if click:
        if w.kind not in ("button", "download_button"):
            raise StreamlitProtocolError(f"widget {w.key!r} is a {w.kind}, not a button")
        ws.trigger_value = True
    elif w.kind in ("selectbox", "radio"):
        ws.string_value = w.option(value)
    elif w.kind in ("button_group", "multiselect"):  # segmented control and pills are button groups
        values = value if isinstance(value, list | tuple) else [value]
        ws.string_array_value.data[:] = [w.option(v) for v in values]
    elif w.kind == "checkbox":  # also st.toggle
        ws.bool_value = bool(value)
    elif w.kind == "number_input":
        ws.double_value = float(value)
    elif w.kind == "slider":
        ws.double_array_value.data[:] = [float(v) for v in (value if isinstance(value, list | tuple) else [value])]
    elif w.kind in ("text_input", "text_area"):
        ws.string_value = str(value)
    else:
        raise StreamlitProtocolError(f"widget {w.key!r}: setting a {w.kind} is not modelled")
    return ws


class StreamlitSession:
    """One Streamlit session over one websocket (what one browser tab is)."""

    def __init__(self, base_url: str, *, timeout: float = DEFAULT_TIMEOUT):
        parts = urlsplit(base_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        self.url = f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}{STREAM_PATH}"
        self.timeout = timeout
        self._ws: ClientConnection | None = None
        self.page_script_hash = ""  # of the page shown now (for rerun())
        self.query_string = ""
        self.path = "/"
        self.last: Run | None = None  # the page as it stands after the latest run
        self._states: dict[str, WidgetState] = {}  # values this client set, by widget id (the frontend's store)
        self._shown: dict[str, Any] = {}  # what each widget shows, by id: set here, or set by the server

    async def __aenter__(self) -> StreamlitSession:
        await self.connect()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def connect(self) -> None:
        try:
            self._ws = await connect(self.url, subprotocols=["streamlit"], max_size=None,
                                     open_timeout=self.timeout, close_timeout=5)
        except (OSError, TimeoutError) as exc:
            raise StreamlitProtocolError(f"cannot connect to {self.url}: {exc!r}") from exc

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
            self._ws = None

    async def open(self, path: str) -> Run:
        """Load ``path`` (``/page?query``) the way a typed-in URL does: by page name."""
        page_name, query = split_path(path)
        return await self._run(path, query_string=query, page_name=page_name)

    async def rerun(self) -> Run:
        """Rerun the page shown now, with the query string it left (what the Rerun menu does)."""
        return await self._run(self.path, query_string=self.query_string, page_script_hash=self.page_script_hash)

    @property
    def widgets(self) -> dict[str, Widget]:
        return self.last.widgets if self.last is not None else {}

    def widget(self, key: str) -> Widget:
        try:
            return self.widgets[key]
        except KeyError:
            raise StreamlitProtocolError(f"{self.path}: no widget {key!r} on the page (widgets: "
                                         f"{sorted(self.widgets)})") from None

    def value(self, key: str) -> Any:
        """What the widget ``key`` shows now, as the frontend keeps it: the value last set by this client or by
        the server (``st.session_state``), else the default it was drawn with."""
        w = self.widget(key)
        return self._shown.get(w.id, w.value)

    async def set(self, key: str, value: Any) -> Run:
        """Set the widget ``key`` to ``value`` as a person would (a select box's option, a number, a text…):
        the page (or the fragment that drew the widget) reruns."""
        w = self.widget(key)
        if w.disabled:
            raise StreamlitProtocolError(f"{self.path}: widget {key!r} is disabled ({w.help or 'no reason given'})")
        state = self._states[w.id] = widget_state(w, value)
        kind = state.WhichOneof("value")
        shown = getattr(state, kind)
        self._shown[w.id] = list(shown.data) if hasattr(shown, "data") else shown
        return await self._widget_run(w.fragment_id)

    async def click(self, key: str) -> Run:
        """Click the button ``key`` (a one-off trigger, as the frontend sends it)."""
        w = self.widget(key)
        if w.disabled:
            raise StreamlitProtocolError(f"{self.path}: button {key!r} is disabled ({w.help or 'no reason given'})")
        return await self._widget_run(w.fragment_id, widget_state(w, click=True))

    async def dismiss(self) -> Run:
        """Close the open dialog (its close button): the app reruns when the dialog asks for it (on_dismiss)."""
        d = self.last.open_dialog if self.last is not None else None
        if d is None or not d.id:
            raise StreamlitProtocolError(f"{self.path}: no open dialog that reruns on dismiss")
        return await self._widget_run("", WidgetState(id=d.id, trigger_value=True))

    async def _widget_run(self, fragment_id: str, trigger: WidgetState | None = None) -> Run:
        return await self._run(self.path, query_string=self.query_string, page_script_hash=self.page_script_hash,
                               fragment_id=fragment_id, trigger=trigger)

    async def _run(self, path: str, *, query_string: str, page_name: str = "", page_script_hash: str = "",
                   fragment_id: str = "", trigger: WidgetState | None = None) -> Run:
        if self._ws is None:
            raise StreamlitProtocolError("not connected")
        msg = BackMsg()
        msg.rerun_script.query_string = query_string
        msg.rerun_script.page_name = page_name
        msg.rerun_script.page_script_hash = page_script_hash
        msg.rerun_script.widget_states.widgets.extend([*self._states.values(), *([trigger] if trigger else [])])
        run = Run(path=path, query_string=query_string, fragment_id=fragment_id)
        if fragment_id and self.last is not None:  # a fragment's run redraws only the fragment
            run.elements, run.widgets = dict(self.last.elements), dict(self.last.widgets)
            run.dialogs, run.page_script_hash = dict(self.last.dialogs), self.last.page_script_hash
        msg.rerun_script.fragment_id = fragment_id
        started = time.perf_counter()
        await self._ws.send(msg.SerializeToString())
        try:
            async with asyncio.timeout(self.timeout):
                await self._collect(run)
        except TimeoutError as exc:
            raise StreamlitProtocolError(f"{path}: no script_finished within {self.timeout} s; so far:\n"
                                         f"{run.texts()}") from exc
        run.seconds = time.perf_counter() - started
        self.path, self.query_string, self.page_script_hash = path, run.query_string, run.page_script_hash
        self.last = run
        drawn = {w.id for w in run.widgets.values()}
        for store in (self._states, self._shown):  # the frontend forgets widgets that are no longer drawn
            for wid in [wid for wid in store if wid not in drawn]:
                del store[wid]
        for w in run.widgets.values():  # ...and takes the value the server set (st.session_state, set_value)
            if w.proto is not None and getattr(w.proto, "set_value", False):
                self._states.pop(w.id, None)
                self._shown[w.id] = w.value
        return run

    async def _collect(self, run: Run) -> None:
        from websockets.exceptions import ConnectionClosed

        assert self._ws is not None
        while True:
            try:
                raw = await self._ws.recv()
            except ConnectionClosed as exc:
                raise StreamlitProtocolError(f"{run.path}: the server closed the websocket: {exc}") from exc
            if isinstance(raw, str):
                raise StreamlitProtocolError(f"{run.path}: unexpected text frame {raw[:200]!r}")
            run.bytes_received += len(raw)
            fm = ForwardMsg()
            fm.ParseFromString(raw)
            kind = fm.WhichOneof("type")
            if kind == "new_session":  # a script run starts (again, after st.rerun): start afresh
                if fm.metadata.run.fragment_ids:  # ...unless only a fragment runs: the rest of the page stays
                    continue
                run.elements.clear()
                run.widgets.clear()
                run.dialogs.clear()
                run.page_not_found = False
            elif kind == "delta":
                path = tuple(fm.metadata.delta_path)
                if fm.delta.WhichOneof("type") == "new_element":
                    run.elements[path] = _element(fm.delta.new_element)
                    w = _widget(fm.delta.new_element, fm.delta.fragment_id)
                    if w is not None:
                        run.widgets[w.key] = w
                elif fm.delta.WhichOneof("type") == "add_block" and fm.delta.add_block.WhichOneof("type") == "dialog":
                    d = fm.delta.add_block.dialog
                    run.dialogs[path] = Dialog(d.title, d.is_open, d.id)
            elif kind == "navigation":
                run.page_script_hash = fm.navigation.page_script_hash
            elif kind == "page_not_found":
                run.page_not_found = True
            elif kind == "page_info_changed":
                run.query_string = fm.page_info_changed.query_string
            elif kind == "session_event" and fm.session_event.WhichOneof("type") == "script_compilation_exception":
                x = fm.session_event.script_compilation_exception
                run.compile_errors.append(f"{x.type}: {x.message}")
            elif kind == "ref_hash":  # only sent for hashes the client says it caches; this one caches none
                raise StreamlitProtocolError(f"{run.path}: unexpected ref_hash message")
            elif kind == "script_finished":
                status = _FINISHED.Name(fm.script_finished)
                if fm.script_finished == _FINISHED.FINISHED_EARLY_FOR_RERUN:
                    run.reruns += 1
                    continue
                run.status = status
                return


def run_sync(coro):
    """Run ``coro`` to its end from synchronous test code, on a thread of its own: Playwright's sync API (the e2e
    tests, earlier in the same pytest process) leaves an event loop running in the main thread, where
    ``asyncio.run`` refuses to start another."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()
