"""A run's results on the pull request where the team reviews them: one comment per branch, kept up to date.

When the run's branch has an open pull request, `invoke share` (once the results are pushed) posts one comment on
it, or updates its own earlier comment for the branch, never a second one: the run, its results commit, DVC's
params and metrics diff against the newest run with results on the pull request's base branch (as `invoke compare
--md` prints it: one renderer, comparison.text), the headline plots as links to the MLflow run that logged them
(never to a public host), and MLflow links without any credential. Through GitHub's REST API with the job's own
token (GITHUB_TOKEN, given to the share step alone; `pull-requests: write` for that job only). A failure to comment
never fails the run: it is said in one line.

    comment(runs, dvc, env, outcome, landing)     where the comment is, or why there is none, in one line
    body(runs, dvc, env, outcome, landing, base)  the comment's Markdown
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from typing import Any

from src.runloop import actions_api, ci, comparison, environment, lock, mlflow_server, record, report
from src.runloop.dvc_repo import Dvc
from src.runloop.outcome_commit import Landing
from src.runloop.runs import Runs

# The first line of the comment: how share finds its own earlier comment for the branch.
MARKER = "<!-- runloop: the newest run of branch {branch} -->"
IMAGES = (".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp")
PAGE = 100


def comment(runs: Runs, dvc: Dvc, env: Mapping[str, str], outcome: record.Outcome, landing: Landing) -> str | None:
    """Post or update the branch's comment; one line saying where it is or why there is none (None off CI)."""
    if not ci.on_ci(env):
        return None
    launch = next((r.launch for r in runs.all if r.tag == outcome.tag), record.Launch())
    if launch.leg:
        return "No pull request comment for a sweep's leg: `invoke runs --sweep` compares the legs."
    if not launch.branch:
        return "No pull request comment: the run's tag names no branch."
    token = ci.job_token(env)
    repo = ci.repository(env, runs.git("remote", "get-url", runs.remote))
    api, why = actions_api.connect(env, repo, token) if token else (None, "the share step has no GITHUB_TOKEN")
    if api is None:
        return f"No pull request comment: {why}."
    try:
        pr = open_pull_request(api, launch.branch, outcome.commit, runs)
        if pr is None:
            return f"No pull request comment: {launch.branch} has no open pull request."
        base = pr["base"]["ref"]
        text = body(runs, dvc, env, outcome, landing, base, launch.branch)
        url, made = upsert(api, pr["number"], launch.branch, text)
    except (actions_api.ApiError, KeyError, TypeError) as exc:
        said = exc if isinstance(exc, actions_api.ApiError) else f"an answer without {exc}"
        return f"No pull request comment ({said}): the results are pushed all the same."
    return f"{'Commented' if made else 'Updated the comment'} on pull request #{pr['number']}: {url}"


def open_pull_request(api: actions_api.Api, branch: str, commit: str, runs: Runs) -> dict | None:
    """The open pull request of `branch` of this repository (not a fork's branch of the same name) whose head
    holds the run's commit, checked by its full SHA; else None."""
    owner = api.repo.split("/")[0]
    query = {"head": f"{owner}:{branch}", "state": "open", "per_page": str(PAGE)}
    for pr in api.request("GET", f"/repos/{api.repo}/pulls", query) or []:
        head = pr.get("head") or {}
        if head.get("ref") != branch or (head.get("repo") or {}).get("full_name") != api.repo:
            continue
        sha = str(head.get("sha") or "")
        if not re.fullmatch(r"[0-9a-f]{40}", sha):
            continue
        if sha != commit and runs.git("cat-file", "-e", f"{sha}^{{commit}}") is None:
            raise actions_api.ApiError(f"pull request #{pr.get('number')}'s head {sha[:12]} is not in this clone")
        if sha == commit or runs.git("merge-base", "--is-ancestor", commit, sha) is not None:
            return pr
    return None


def upsert(api: actions_api.Api, number: int, branch: str, text: str) -> tuple[str, bool]:
    """Update share's earlier comment for `branch` on pull request `number`, else create it: (its URL, created)."""
    marker = MARKER.format(branch=branch)
    page = 1
    while True:
        query = {"per_page": str(PAGE), "page": str(page)}
        found = api.request("GET", f"/repos/{api.repo}/issues/{int(number)}/comments", query) or []
        mine = next((c for c in found if str(c.get("body", "")).startswith(marker)), None)
        if mine:
            done = api.request("PATCH", f"/repos/{api.repo}/issues/comments/{int(mine['id'])}", body={"body": text})
            return str(done.get("html_url", "")), False
        if len(found) < PAGE:
            break
        page += 1
    done = api.request("POST", f"/repos/{api.repo}/issues/{int(number)}/comments", body={"body": text})
    return str(done.get("html_url", "")), True


def body(
    runs: Runs, dvc: Dvc, env: Mapping[str, str], o: record.Outcome, landing: Landing, base: str, branch: str
) -> str:
    """The comment: the run, where its results are, the diff against the base branch's newest run, plots, MLflow."""
    server = environment.env_value("GITHUB_SERVER_URL", env) or "https://github.com"
    repo = ci.repository(env, None) or ""
    results = landing.commit
    link = f"[`{results[:12]}`]({server}/{repo}/commit/{results})" if repo else f"`{results[:12]}`"
    kind = "the same results as an earlier run" if o.kind == record.SAME else "results"
    lines = [MARKER.format(branch=branch), f"### Run `{o.tag}`: {kind}", ""]
    where = f" on `{landing.branch}`" if landing.branch else ""
    lines.append(f"- Results commit: {link}{where}" + (f" (the same as `{o.same_as[:12]}`)" if o.same_as else ""))
    if o.ci_run:
        lines.append(f"- CI run: {o.ci_run}")
    records = lock.run_records()
    for line in report.mlflow_lines(records):
        lines.append(f"- {line}")
    if command := landing.pull_request_command(o.subject or o.tag):
        lines += ["", f"> `{landing.refused}` takes no direct push: the results are on `{landing.branch}`. Open a "
                  f"pull request of them:", ">", f"> `{command}`"]  # fmt: skip
    lines += ["", *_comparison(runs, dvc, base), *_plots(env, records)]
    return "\n".join(lines).rstrip() + "\n"


def _comparison(runs: Runs, dvc: Dvc, base: str) -> list[str]:
    older = next((r for r in runs.of_branch(base) if r.results and not r.leg), None)
    if older is None:
        return [f"#### Compared with: nothing (no run of `{base}` has results yet)", ""]
    failed = comparison.fetch(dvc, [older.results or ""], ("metrics",))
    text = comparison.text(runs.git, dvc, comparison.rev(older), None, md=True)
    note = [f"(Fetching its metric files failed: {failed})", ""] if failed and comparison.MISSING in text else []
    head = f"#### Compared with `{older.tag}` ({comparison.rev(older)}), the newest run with results on `{base}`"
    return [head, "", *note, text.rstrip(), ""]


def _plots(env: Mapping[str, str], records: list[dict[str, Any]]) -> list[str]:
    """Links to the headline plots (the image plots dvc.yaml declares) in the MLflow run of the stage that made them."""
    try:
        declared = [o for o in lock.declared(lock.stages()) if o.path.lower().endswith(IMAGES)]
    except environment.SettingsError:
        return []
    by_stage = {r["stage"]: r for r in records}
    lines = []
    for plot in declared:
        entry = by_stage.get(plot.stage)
        if entry is None or environment.is_local_store(entry["tracking_uri"]):
            continue
        uri = environment.tracking_uri(env)  # the credentials to ask with; links carry none (the record's URI)
        name = posixpath.basename(plot.path)
        logged = [p for p in mlflow_server.artifacts(uri, entry["run_id"], env) if posixpath.basename(p) == name]
        if logged:
            lines.append(f"- [{plot.path}]({report.run_link(entry)}/artifacts/{logged[0]})")
    return ["#### Plots (in MLflow)", "", *lines, ""] if lines else []
