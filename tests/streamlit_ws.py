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

Widget interaction is not modelled (no ``widget_states`` are sent): this is for loading pages.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from websockets.asyncio.client import ClientConnection, connect

STREAM_PATH = "/_stcore/stream"
DEFAULT_TIMEOUT = 60.0
_FINISHED = ForwardMsg.ScriptFinishedStatus
_TEXT_FIELDS = ("body", "label", "message", "code_text")


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
        if self.status != "FINISHED_SUCCESSFULLY":
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

    async def _run(self, path: str, *, query_string: str, page_name: str = "", page_script_hash: str = "") -> Run:
        if self._ws is None:
            raise StreamlitProtocolError("not connected")
        msg = BackMsg()
        msg.rerun_script.query_string = query_string
        msg.rerun_script.page_name = page_name
        msg.rerun_script.page_script_hash = page_script_hash
        run = Run(path=path, query_string=query_string)
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
            fm = ForwardMsg()
            fm.ParseFromString(raw)
            kind = fm.WhichOneof("type")
            if kind == "new_session":  # a script run starts (again, after st.rerun): start afresh
                run.elements.clear()
                run.page_not_found = False
            elif kind == "delta":
                if fm.delta.WhichOneof("type") == "new_element":
                    run.elements[tuple(fm.metadata.delta_path)] = _element(fm.delta.new_element)
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
