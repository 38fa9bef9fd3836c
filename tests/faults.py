"""Fault servers for the fault-injection tests: real sockets on 127.0.0.1, no mocks.

- :func:`closed_url` — nothing listens there (connection refused);
- :class:`BlackHole` — accepts every connection and never answers (a hung server);
- :class:`Answers` — a tiny HTTP server that answers every request with one status (500 by default), on a
  free port or a given one, and keeps the headers of what it was sent.
"""

from __future__ import annotations

import http.server
import socket
import threading

from tests.conftest import free_port


def closed_url() -> str:
    """An http URL on a port nothing listens on."""
    return f"http://127.0.0.1:{free_port()}"


class BlackHole:
    """A server that accepts connections and never answers a byte (reads what is sent, then holds on)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.held: list[socket.socket] = []
        self.accepted = 0
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self.held.append(conn)

    def close(self) -> None:
        self.closed = True
        self.sock.close()
        for c in self.held:
            c.close()


class Answers:
    """An HTTP server answering every request (any method, any path) with ``status`` and a short JSON body."""

    def __init__(self, status: int = 500, port: int = 0):
        self.requests = 0
        self.headers: list[dict[str, str]] = []  # of every request, lower-cased names
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self):
                outer.requests += 1
                outer.headers.append({k.lower(): v for k, v in self.headers.items()})
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                body = b'{"error": "injected server error"}'
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _answer  # noqa: N815 - http.server's naming

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


FAULTS = ("down", "hung", "500")


def serve_faults():
    """For a module-scoped fixture (``yield from serve_faults()``): ``{"down": …, "hung": …, "500": …}``, a closed
    port, a server that never answers and one that answers 500."""
    hole, err = BlackHole(), Answers(500)
    try:
        yield {"down": closed_url(), "hung": hole.url, "500": err.url}
    finally:
        hole.close()
        err.close()


def elapsed(fn, *args, **kwargs):
    """(seconds, what ``fn`` raised or returned)."""
    import time

    t = time.monotonic()
    try:
        out = fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the caller asserts on it
        out = exc
    return time.monotonic() - t, out
