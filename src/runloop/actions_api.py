"""GitHub's Actions REST API, read only: the workflow run a run tag started, the step it is at, how it ended.

    token(env)                        GH_TOKEN, else GITHUB_TOKEN: sent in one request header, never printed
    connect(env, repository)          an `Api`, or None and why not (no token, no GitHub repository)
    Api.progress(sha, tag)            where the tag's workflow run is: not started, queued, running (step), done;
                                      a job queued for more than QUEUE_WARNING seconds with no runner is said so

A tag's run is found as GitHub documents it: `GET /repos/{owner}/{repo}/actions/runs?head_sha=<the tagged commit's
full SHA>&event=push`, then the run whose `head_branch` is the tag (another tag of the same commit has runs too);
its steps come from `GET /repos/{owner}/{repo}/actions/runs/{run_id}/jobs`. The base URL is `GITHUB_API_URL` when
set (GitHub sets it on runners; GitHub Enterprise has its own), else https://api.github.com.

A job that waits for a runner is one whose `status` is "queued" and whose `runner_name` is null; its `created_at`
says since when and its `labels` which runners it waits for. (Which runners are online is `GET .../actions/runners`,
which needs admin rights a GITHUB_TOKEN cannot have: the job's own fields are what any token reads.)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from src.runloop import environment

API_URL = "https://api.github.com"
VERSION = "2022-11-28"  # the REST API version the responses read here are documented for
TIMEOUT = 15.0
LOW_RATE = 10  # requests left in the hour below which the API is left alone (git keeps following)
NOT_STARTED, QUEUED, RUNNING, SUCCEEDED, FAILED = "not started", "queued", "running", "succeeded", "failed"
_QUEUED = {"requested", "queued", "pending", "waiting"}
QUEUE_WARNING = 300.0  # seconds a job may wait for a runner before watch says none of its labels seems online


class ApiError(Exception):
    """The API did not answer as documented; the message is one line, without the token."""


@dataclass(frozen=True)
class Progress:
    """Where a tag's workflow run is: its state, the step in progress (or the failed one), its page."""

    state: str
    step: str = ""
    url: str = ""


def token(env: Mapping[str, str]) -> str | None:
    return environment.env_value("GH_TOKEN", env) or environment.env_value("GITHUB_TOKEN", env)


def connect(env: Mapping[str, str], repo: str | None, secret: str | None = None) -> tuple[Api | None, str]:
    """The API for repository `repo` (owner/name, ci.repository) with `secret` (default: GH_TOKEN or GITHUB_TOKEN),
    or None and why it is not used."""
    secret = secret or token(env)
    if not secret:
        return None, "no GH_TOKEN or GITHUB_TOKEN is set: the runs' records tell how they end"
    if not repo:
        return None, "the remote is not on github.com and GITHUB_REPOSITORY is not set: no repository to ask about"
    base = environment.env_value("GITHUB_API_URL", env) or API_URL
    if not base.startswith(("https://", "http://")):
        return None, f"GITHUB_API_URL {base!r} is not an http(s) URL"
    return Api(base, repo, secret), ""


class Api:
    """Requests to GitHub's REST API about one repository: the Actions API read here, and whatever a flow asks
    through `request` (pull_request.py writes one comment)."""

    def __init__(self, base: str, repo: str, secret: str) -> None:
        self.base = base.rstrip("/")
        self.repo = repo
        self._token = secret

    def __repr__(self) -> str:  # never the token
        return f"Api({self.base!r}, {self.repo!r})"

    def get(self, path: str, query: Mapping[str, str] | None = None) -> Any:
        """The JSON GitHub answers for GET `path`; ApiError (one line, no token) for anything else."""
        return self.request("GET", path, query)

    def request(
        self, method: str, path: str, query: Mapping[str, str] | None = None, body: Mapping[str, Any] | None = None
    ) -> Any:
        """The JSON GitHub answers for `method` `path` (with a JSON `body`); ApiError (one line, no token) else."""
        import urllib.error
        import urllib.parse
        import urllib.request

        url = f"{self.base}{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        headers = {
            "Accept": "application/vnd.github+json",
            "Authorization": f"Bearer {self._token}",
            "X-GitHub-Api-Version": VERSION,
            "User-Agent": "runloop",
        }
        data = None
        if body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        request = urllib.request.Request(  # noqa: S310 - connect() lets only http(s) base URLs through
            url, data=data, headers=headers, method=method
        )
        try:
            with _opener().open(request, timeout=TIMEOUT) as response:
                left = response.headers.get("X-RateLimit-Remaining")
                body = response.read()
        except urllib.error.HTTPError as exc:
            said = _message(exc.read())
            raise ApiError(self._clean(f"GitHub's API answered {exc.code} {said or exc.reason} for {path}")) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApiError(self._clean(f"GitHub's API at {self.base} could not be reached ({reason})")) from None
        if left is not None and left.isdigit() and int(left) < LOW_RATE:
            raise ApiError(f"GitHub's API rate limit is nearly used up ({left} requests left this hour)")
        try:
            return json.loads(body)
        except ValueError:
            raise ApiError(f"GitHub's API answered {path} with something that is not JSON") from None

    def _clean(self, text: str) -> str:
        return environment.one_line(environment.scrub(text, secrets=[self._token]))

    def run_for(self, sha: str, tag: str) -> dict | None:
        """The newest workflow run the push of `tag` (at commit `sha`, in full) started, or None yet."""
        found = self.get(f"/repos/{self.repo}/actions/runs", {"head_sha": sha, "event": "push", "per_page": "100"})
        runs = [r for r in (found or {}).get("workflow_runs") or [] if isinstance(r, dict)]
        mine = [r for r in runs if r.get("head_branch") == tag and r.get("head_sha") == sha]
        return max(mine, key=lambda r: (r.get("run_attempt") or 0, r.get("id") or 0), default=None)

    def jobs(self, run_id: int) -> list[dict]:
        found = self.get(f"/repos/{self.repo}/actions/runs/{int(run_id)}/jobs", {"filter": "latest"})
        return [j for j in (found or {}).get("jobs") or [] if isinstance(j, dict)]

    def progress(self, sha: str, tag: str) -> Progress:
        """Where the workflow run of `tag` is now."""
        found = self.run_for(sha, tag)
        if found is None:
            return Progress(NOT_STARTED)
        url = str(found.get("html_url") or "")
        status, conclusion = found.get("status"), found.get("conclusion")
        now = datetime.now(UTC)
        if status in _QUEUED and _age(found.get("created_at"), now) < QUEUE_WARNING:
            return Progress(QUEUED, str(status), url)  # a fresh run: its jobs are not worth a request yet
        if status == "completed" and conclusion == "success":
            return Progress(SUCCEEDED, "", url)
        jobs = self.jobs(found["id"]) if "id" in found else []
        if status == "completed":
            return Progress(FAILED, _failed_step(jobs, str(conclusion)), url)
        if waiting := _waiting_for_a_runner(jobs, now):
            return Progress(QUEUED, waiting, url)
        if status in _QUEUED:
            return Progress(QUEUED, str(status), url)
        return Progress(RUNNING, _current_step(jobs), url)


def _age(stamp: Any, now: datetime) -> float:
    """Seconds since an API timestamp ("2026-11-28T10:00:00Z"); 0 for one that cannot be read."""
    try:
        return (now - datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))).total_seconds()
    except ValueError:
        return 0.0


def _waiting_for_a_runner(jobs: list[dict], now: datetime) -> str:
    """What to say of a job no runner has taken while no other job runs (since when, and the labels it waits for,
    with a warning after QUEUE_WARNING seconds), else ""."""
    if any(job.get("status") == "in_progress" for job in jobs):
        return ""
    for job in jobs:
        if job.get("status") in _QUEUED and not job.get("runner_name"):
            labels = ", ".join(str(label) for label in job.get("labels") or []) or "none"
            if _age(job.get("created_at"), now) < QUEUE_WARNING:
                return f"job {job.get('name')!r} waits for a runner with labels [{labels}]"
            since = str(job.get("created_at", "?")).replace("T", " ").replace("Z", " UTC")
            return (
                f"job {job.get('name')!r} has waited since {since} for a runner with labels [{labels}] — is one "
                "of that class online? (docs/runners.md)"
            )
    return ""


def _current_step(jobs: list[dict]) -> str:
    for job in jobs:
        if job.get("status") == "in_progress":
            steps = job.get("steps") or []
            step = next((s for s in steps if s.get("status") == "in_progress"), None)
            return f"step {step.get('name')!r}" if step else f"job {job.get('name')!r}"
    return "starting"


def _failed_step(jobs: list[dict], conclusion: str) -> str:
    for job in jobs:
        if job.get("conclusion") not in (None, "success", "skipped"):
            steps = job.get("steps") or []
            step = next((s for s in steps if s.get("conclusion") not in (None, "success", "skipped")), None)
            if step:
                return f"step {step.get('name')!r} ({step.get('conclusion')}) of job {job.get('name')!r}"
            return f"job {job.get('name')!r} ({job.get('conclusion')})"
    return f"the run ended {conclusion}"


def _message(body: bytes) -> str:
    try:
        said = json.loads(body).get("message", "")
    except (ValueError, AttributeError):
        return ""
    return f"({said})" if said else ""


def _opener() -> Any:
    """urllib's opener, following a redirect only to the same scheme and host: the token goes nowhere else."""
    import urllib.request
    from urllib.parse import urlsplit

    class SameHost(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, req, fp, code, msg, headers, newurl):
            if urlsplit(req.full_url)[:2] != urlsplit(newurl)[:2]:
                return None  # urllib raises the redirect as an HTTPError instead
            return super().redirect_request(req, fp, code, msg, headers, newurl)

    return urllib.request.build_opener(SameHost())
