"""The MLflow tracking server, asked over its REST API: does it answer, as MLflow, and hold (or take) the experiment.

One plain HTTP request with a few seconds' timeout. The MLflow client would retry an unreachable server for about
four minutes and quote the URL, password included, in its errors; importing it also costs seconds. urllib is
imported inside the functions: with embedded defaults nothing here runs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit, urlunsplit

from src.runloop import environment

TIMEOUT_SECONDS = 5.0


class Unusable(Exception):
    """The server cannot take the run's records: `why` and `fix`, each safe to print."""

    def __init__(self, why: str, fix: str) -> None:
        super().__init__(f"{why} — {fix}")
        self.why, self.fix = why, fix


def check(uri: str, experiments: list[str], env: Mapping[str, str], create: bool) -> str:
    """What the server at `uri` says about the experiments (created when missing and `create`); raises Unusable."""
    import urllib.error

    shown = environment.redact(uri)
    variable = "MLFLOW_URL" if environment.env_value("MLFLOW_URL", env) else "MLFLOW_TRACKING_URI"
    try:
        if not experiments:
            status, body = _request(uri, "GET", "experiments/search", env, params={"max_results": "1"})
            _expect_ok(status, body, shown, variable)
            return f"{shown} answers"
        said = []
        for name in experiments:
            status, body = _request(uri, "GET", "experiments/get-by-name", env, params={"experiment_name": name})
            if status == 404 and (body or {}).get("error_code") == "RESOURCE_DOES_NOT_EXIST":
                if not create:
                    said.append(f"experiment {name!r} not there yet (the first run creates it)")
                    continue
                status, body = _request(uri, "POST", "experiments/create", env, data={"name": name})
                if (body or {}).get("error_code") != "RESOURCE_ALREADY_EXISTS":  # another run created it a moment ago
                    _expect_ok(status, body, shown, variable)
                said.append(f"experiment {name!r} created")
                continue
            _expect_ok(status, body if body and "experiment" in body else None, shown, variable)
            if body["experiment"].get("lifecycle_stage") == "deleted":
                raise Unusable(
                    f"MLflow experiment {name!r} is deleted at {shown}",
                    "restore it in MLflow, or name another experiment in params.yaml",
                )
            said.append(f"experiment {name!r} found")
        return f"{shown} answers; {', '.join(said)}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        said = environment.one_line(environment.scrub(str(reason) or type(reason).__name__, env), 120)
        raise Unusable(
            f"MLflow at {shown} is unreachable ({said})",
            f"check {variable} and that the tracking server is up",
        ) from None


def artifacts(uri: str, run_id: str, env: Mapping[str, str], depth: int = 2) -> list[str]:
    """The paths of the files an MLflow run logged as artifacts, `depth` folders down (none when it cannot say)."""
    found, folders = [], [("", 0)]
    while folders:
        path, level = folders.pop()
        try:
            status, body = _request(uri, "GET", "artifacts/list", env, params={"run_id": run_id, "path": path})
        except (OSError, ValueError):
            return found
        for entry in (body or {}).get("files", []) if status == 200 else []:
            if entry.get("is_dir") and level + 1 < depth:
                folders.append((entry["path"], level + 1))
            elif not entry.get("is_dir"):
                found.append(entry["path"])
    return sorted(found)


def _expect_ok(status: int, body: dict[str, Any] | None, shown: str, variable: str) -> None:
    if status == 200 and body is not None:
        return
    if status in (401, 403):
        raise Unusable(
            f"MLflow at {shown} refused the credentials (HTTP {status})",
            f"check the user and password in {variable} (or MLFLOW_TRACKING_USERNAME/PASSWORD, MLFLOW_TRACKING_TOKEN)",
        )
    if body is None or "error_code" not in body:
        raise Unusable(
            f"{shown} answered HTTP {status} to MLflow's REST API: no MLflow tracking server at that URL",
            f"check {variable}: the address the MLflow UI is served at",
        )
    message = environment.one_line(environment.scrub(str(body.get("message", "")), None), 160)
    raise Unusable(
        f"MLflow at {shown} answered HTTP {status} {body['error_code']} ({message})",
        "check the server's log and its permissions for this user",
    )


def _request(
    uri: str,
    method: str,
    endpoint: str,
    env: Mapping[str, str],
    params: Mapping[str, str] | None = None,
    data: Mapping[str, Any] | None = None,
) -> tuple[int, dict[str, Any] | None]:
    """(HTTP status, JSON body or None) of one REST call, authenticated the way the MLflow client would be."""
    import base64
    import ssl
    import urllib.error
    import urllib.request

    parts = urlsplit(uri)
    base = urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path.rstrip("/"), "", ""))
    url = f"{base}/api/2.0/mlflow/{endpoint}" + (f"?{urlencode(params)}" if params else "")
    headers = {"Accept": "application/json", "User-Agent": "runloop-check"}
    user = unquote(parts.username) if parts.username else environment.env_value("MLFLOW_TRACKING_USERNAME", env)
    password = (
        unquote(parts.password or "") if parts.username else environment.env_value("MLFLOW_TRACKING_PASSWORD", env)
    )
    if token := environment.env_value("MLFLOW_TRACKING_TOKEN", env):
        headers["Authorization"] = f"Bearer {token}"
    elif user:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password or ''}".encode()).decode()
    body = None
    if data is not None:
        body, headers["Content-Type"] = json.dumps(data).encode(), "application/json"
    context = None
    if parts.scheme == "https":
        if (environment.env_value("MLFLOW_TRACKING_INSECURE_TLS", env) or "").lower() == "true":
            context = ssl._create_unverified_context()  # noqa: S323 - the user asked MLflow for exactly this
        else:
            context = ssl.create_default_context(cafile=environment.env_value("MLFLOW_TRACKING_SERVER_CERT_PATH", env))
    request = urllib.request.Request(url, data=body, headers=headers, method=method)  # noqa: S310 - http(s) only
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{parts.scheme}: is not an HTTP URL")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS, context=context) as response:  # noqa: S310
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        parsed = json.loads(raw)
    except ValueError:  # an HTML page: a proxy's, a login form's, anything but MLflow's API
        return status, None
    return status, parsed if isinstance(parsed, dict) else None
