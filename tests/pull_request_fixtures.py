"""A local stand-in for GitHub's pull request and issue comment endpoints, replaying documented responses.

It answers what `invoke share` asks (REST API version 2022-11-28): "List pull requests" filtered by `head` and
`state`, "List issue comments" (paginated with per_page/page), "Create an issue comment" (201) and "Update an issue
comment" (200), in the shapes GitHub documents, for one repository. It checks the bearer token as GitHub does,
keeps the comments it was given, and records every request.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from json_api import Request, serving

REPOSITORY = "example-org/mlproj"
WEB = f"https://github.com/{REPOSITORY}"
STAMP = "2026-12-01T10:00:00Z"
BOT = {"login": "github-actions[bot]", "id": 41898282, "type": "Bot"}


@dataclass
class PullRequests:
    """The server's state: the token it takes, the open pull requests, the comments, every request."""

    token: str
    url: str = ""
    pulls: list[dict] = field(default_factory=list)
    comments: dict[int, list[dict]] = field(default_factory=dict)  # pull number → its comments, oldest first
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path?query)
    down: bool = False  # answer 503 to everything, as GitHub's API on a bad day
    lock: threading.Lock = field(default_factory=threading.Lock)

    def open(self, number: int, branch: str, sha: str, base: str = "main", repo: str = REPOSITORY) -> dict:
        """An open pull request of `branch` (at `sha`, of repository `repo`) into `base`."""
        pull = {
            "url": f"https://api.github.com/repos/{REPOSITORY}/pulls/{number}",
            "id": 1000 + number,
            "number": number,
            "state": "open",
            "title": f"Pull request {number}",
            "html_url": f"{WEB}/pull/{number}",
            "user": {"login": "octocat", "id": 1, "type": "User"},
            "head": {"label": f"{repo.split('/')[0]}:{branch}", "ref": branch, "sha": sha, "repo": {"full_name": repo}},
            "base": {"label": f"example-org:{base}", "ref": base, "sha": "0" * 40, "repo": {"full_name": REPOSITORY}},
            "created_at": STAMP,
            "updated_at": STAMP,
        }
        self.pulls.append(pull)
        self.comments.setdefault(number, [])
        return pull

    def say(self, number: int, body: str, user: dict | None = None) -> dict:
        """A comment someone else wrote on pull request `number`."""
        return self._add(number, body, user or {"login": "octocat", "id": 1, "type": "User"})

    def _add(self, number: int, body: str, user: dict) -> dict:
        comment_id = 5000 + sum(len(c) for c in self.comments.values())
        comment = {
            "id": comment_id,
            "node_id": f"IC_{comment_id}",
            "url": f"https://api.github.com/repos/{REPOSITORY}/issues/comments/{comment_id}",
            "html_url": f"{WEB}/pull/{number}#issuecomment-{comment_id}",
            "body": body,
            "user": user,
            "created_at": STAMP,
            "updated_at": STAMP,
            "issue_url": f"https://api.github.com/repos/{REPOSITORY}/issues/{number}",
            "author_association": "NONE",
        }
        self.comments.setdefault(number, []).append(comment)
        return comment

    def answer(self, method: str, path: str, query: dict, authorization: str, body: dict | None) -> tuple[int, object]:
        if self.down:
            return 503, {"message": "Service Unavailable"}
        if authorization != f"Bearer {self.token}":
            return 401, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}
        prefix = f"/repos/{REPOSITORY}"
        if method == "GET" and path == f"{prefix}/pulls":
            head, state = query.get("head", [""])[0], query.get("state", ["open"])[0]
            found = [p for p in self.pulls if p["state"] == state and (not head or p["head"]["label"] == head)]
            return 200, found
        parts = path.removeprefix(f"{prefix}/issues/").split("/")
        if path.startswith(f"{prefix}/issues/") and len(parts) == 2 and parts[1] == "comments" and parts[0].isdigit():
            number = int(parts[0])
            if number not in self.comments:
                return 404, {"message": "Not Found"}
            if method == "GET":
                per_page, page = int(query.get("per_page", ["30"])[0]), int(query.get("page", ["1"])[0])
                return 200, self.comments[number][(page - 1) * per_page : page * per_page]
            if method == "POST" and body and "body" in body:
                return 201, self._add(number, body["body"], BOT)
        if method == "PATCH" and len(parts) == 2 and parts[0] == "comments" and parts[1].isdigit():
            for comments in self.comments.values():
                for comment in comments:
                    if comment["id"] == int(parts[1]) and body and "body" in body:
                        comment.update(body=body["body"], updated_at="2026-12-01T11:00:00Z")
                        return 200, comment
            return 404, {"message": "Not Found"}
        return 404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}


@pytest.fixture
def pull_requests() -> Iterator[PullRequests]:
    """The replaying API on a free loopback port, stopped after the test."""
    state = PullRequests(token=f"ghs_{uuid.uuid4().hex}")

    def answer(request: Request) -> tuple[int, object]:
        with state.lock:
            state.requests.append((request.method, request.target))
            authorization = request.headers.get("authorization", "")
            return state.answer(request.method, request.path, request.query, authorization, request.body)

    with serving(answer) as url:
        state.url = url
        yield state
