"""The workflow's first job: which runners a run goes to, from the runner class its tag records.

    python3 -m src.runloop.route      (the route job's step; its outputs `class` and `labels` feed the run job)

It fetches the run tag itself (actions/checkout may have turned the annotated tag into a lightweight one, and the
annotation is what names the class), reads the class (record.Launch.runner; none: the table's default), and maps
it through invoke.yaml's table (runner_classes.py) to the run job's `runs-on` labels, written as the job's outputs.
Only the table's words leave this step, never the annotation's text. A class the table does not have (a tag made
by hand, or with an older table) fails the step in seconds with one line, instead of a job that waits a day for
a runner that does not exist; the route job's last step then records the failure on the remote (failure.py).

Standard library and git only: the route job installs nothing.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping

from src.runloop import ci, environment, push_credential, record, runner_classes
from src.runloop.git import Git, last_lines
from src.runloop.refusal import Refused

TOKEN = "GITHUB_TOKEN"  # noqa: S105 - a variable's name: the job's own token (contents: read), for fetching the tag alone
CLASS, LABELS = "class", "labels"  # the route job's outputs


def launch(git: Git, tag: str, token: str | None, remote: str = "origin") -> record.Launch:
    """What the tag's annotation records, read from the tag object fetched from `remote`."""
    auth = push_credential.git_auth(token)
    fetched = git.run(*auth.args, "fetch", "--quiet", "--no-tags", remote, f"+refs/tags/{tag}:refs/tags/{tag}",
                      env=auth.env)  # fmt: skip
    body = git("cat-file", "tag", f"refs/tags/{tag}")
    if body is None and fetched.returncode != 0:
        raise Refused(
            f"Tag {tag}'s annotation could not be fetched from {remote} ({last_lines(fetched.stderr, 2)}), and it "
            "names the run's runner class — check the job's token may read the repository (contents: read)."
        )
    try:
        return record.parse_launch(body.partition("\n\n")[2] if body else "")
    except record.RecordError as exc:
        why = f"Tag {tag}'s annotation cannot be read: {exc}"
        raise Refused(f"{why} — tag the commit again with `invoke tag-run`.") from None


def route(env: Mapping[str, str], git: Git) -> tuple[str, tuple[str, ...]]:
    """The run's class and its labels; Refused with one line for a class the table does not have."""
    tag = ci.run_tag(env)
    if not tag:
        raise Refused("No run tag in this job (it was not started by a tag push) — runs start from `invoke tag-run`.")
    table = runner_classes.read(environment.ROOT)
    asked = launch(git, tag, environment.env_value(TOKEN, env)).runner
    name = asked or table.default
    if name not in table.classes:
        raise Refused(
            f"Run {tag} asks for runner class {name!r}, which {runner_classes.WHERE} does not have "
            f"({', '.join(table.names)}) — tag the commit again with `invoke tag-run --runner CLASS`, naming one of "
            "those, or add the class to the table."
        )
    return name, table.labels(name)


def main(env: Mapping[str, str]) -> int:
    try:
        name, labels = route(env, Git())
    except Refused as exc:
        print(environment.one_line(str(exc), 600), file=sys.stderr, flush=True)
        return 1
    ci.set_output(env, CLASS, name)
    ci.set_output(env, LABELS, json.dumps(list(labels)))
    print(f"Runner class {name}: the run job runs on [{', '.join(labels)}].", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(dict(os.environ)))
