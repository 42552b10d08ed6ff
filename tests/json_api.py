"""A JSON API on a free loopback port, for the stand-ins of GitHub's REST API (watch_fixtures, pull_request_fixtures).

serving(answer)    a server calling answer(Request) -> (status, body) for each GET, POST and PATCH, and
                   answering that as JSON (with the rate-limit header GitHub sends); yields its base URL
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Request:
    """One request: its method, path (no query), query, headers (names lower-cased) and JSON body (None if not)."""

    method: str
    path: str
    target: str  # the path and query as sent
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: object


@contextmanager
def serving(answer: Callable[[Request], tuple[int, object]]) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            headers = {k.lower(): v for k, v in self.headers.items()}  # names are case-insensitive in HTTP
            request = Request(self.command, parts.path, self.path, parse_qs(parts.query), headers, body)
            code, answered = answer(request)
            data = json.dumps(answered).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("X-RateLimit-Remaining", "4999")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = _serve  # noqa: N815 - http.server's names

        def log_message(self, *args: object) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
