"""`git http-backend` behind HTTP basic auth on loopback: a forge that takes pushes with one token alone.

serving(origin, token)    `origin` served over smart HTTP while the block runs: its URL and the server, which
                          keeps every request (authorized or not) and any command line that showed the token
holds(data, token)        whether bytes hold the token, as is or inside the basic-auth header that carries it
"""

from __future__ import annotations

import base64
import os
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, make_server


class GitHttp:
    """`git http-backend` behind HTTP basic auth: what a forge does with the token `invoke share` sends."""

    def __init__(self, root: Path, token: str) -> None:
        self.root = root
        self.token = token
        self.expected = "Basic " + base64.b64encode(f"x-access-token:{token}".encode()).decode()
        self.requests: list[tuple[str, str, bool]] = []  # method, path + query, authorized
        self.command_lines: list[str] = []  # of every process running while a request came in
        self.leaked: list[str] = []  # those that showed the token to anyone who runs `ps`

    def __call__(self, environ: dict, start_response) -> list[bytes]:
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                line = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            self.command_lines.append(line)
            if holds(line.encode(), self.token):
                self.leaked.append(line)
        authorized = environ.get("HTTP_AUTHORIZATION", "").lower() == self.expected.lower()
        self.requests.append(
            (environ["REQUEST_METHOD"], f"{environ['PATH_INFO']}?{environ['QUERY_STRING']}", authorized)
        )
        if not authorized:
            start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="git"')])
            return [b"authentication required\n"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        cgi = {
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REMOTE_USER": "x-access-token",  # lets http-backend serve pushes
            "REQUEST_METHOD": environ["REQUEST_METHOD"],
            "PATH_INFO": environ["PATH_INFO"],
            "QUERY_STRING": environ.get("QUERY_STRING", ""),
            "CONTENT_TYPE": environ.get("CONTENT_TYPE", ""),
            "CONTENT_LENGTH": str(length),
            "HTTP_CONTENT_ENCODING": environ.get("HTTP_CONTENT_ENCODING", ""),
            "GIT_PROTOCOL": environ.get("HTTP_GIT_PROTOCOL", ""),
            "PATH": os.environ["PATH"],
            "HOME": os.environ["HOME"],
        }
        body = environ["wsgi.input"].read(length) if length else b""
        done = subprocess.run(["git", "http-backend"], input=body, env=cgi, capture_output=True)
        head, _, payload = done.stdout.partition(b"\r\n\r\n")
        headers = [tuple(line.split(": ", 1)) for line in head.decode().split("\r\n") if line]
        status = next((v for k, v in headers if k.lower() == "status"), "200 OK")
        start_response(status, [(k, v) for k, v in headers if k.lower() != "status"])
        return [payload]


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def holds(data: bytes, token: str) -> bool:
    """Whether `data` holds `token`, as is or inside the basic-auth header that carries it."""
    return any(form in data for form in (token.encode(), base64.b64encode(f"x-access-token:{token}".encode())))


@contextmanager
def serving(origin: Path, token: str) -> Iterator[tuple[str, GitHttp]]:
    """`origin` served over smart HTTP on loopback, pushes allowed with `token` only; its URL and the server."""
    app = GitHttp(origin.parent, token)
    server = make_server("127.0.0.1", 0, app, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/{origin.name}", app
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
