"""The project's name and every file that repeats it; `invoke init` turning the template into a project of its own.

The name lives in invoke.yaml (`runloop.name`). tasks.py reads it there, so run tags are `run-<name>-…` and tasks.py
itself never changes with the name: a later fix to it from the template merges cleanly. The files that cannot read
invoke.yaml hold a copy, which `invoke init NAME` writes and `disagreements` checks:

    params.yaml          `experiment:` (MLflow's) and `registered_model:` of every section that has one
    .dvc/config          the default remote's url ends in /<name>: the project's prefix in the team's bucket
    .github/workflows/   a tag-triggered workflow's `name: Run <name> pipeline` and its filter `run-<name>*`
    README.md            the title, `# <name>: …`
"""

from __future__ import annotations

import keyword
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from src.runloop import ci, dvc_remote, lock, skeleton
from src.runloop.environment import ROOT
from src.runloop.git import Git, last_lines, listed
from src.runloop.refusal import Refused

SETTINGS = "invoke.yaml"
PARAMS = "params.yaml"
DVC_CONFIG = ".dvc/config"
WORKFLOWS = ".github/workflows"
# The workflow a run tag starts: the one that runs `invoke repro` and `invoke share` on the runner.
WORKFLOW = f"{WORKFLOWS}/github_actions_pipeline.yml"
README = "README.md"
# The checks a project passes, as the README's Quickstart runs them (in the environment it set up, dev packages
# included: no venv of nox's own) and as init says to run them after its commit.
CHECK = "nox --no-venv -s lint tests"
# Keys of a params.yaml section that name the project: the MLflow experiment, the model registry's name.
NAMED_KEYS = ("experiment", "registered_model")
NAME = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
# Packages src/ holds in every project: the machinery, and the tests' own pipeline in the tests' project copies.
TAKEN = ("runloop", "mini")
# The example pipeline `invoke init` replaces: its code and tests, and what its stages run.
EXAMPLE = ("src/example", "tests/example")
EXAMPLE_MODULE = "src.example."


@dataclass(frozen=True)
class Place:
    """One copy of the project's name: where it is, what it says, and what it should say."""

    file: str
    what: str
    says: Any
    wants: Any


@dataclass(frozen=True)
class Change:
    """One file `invoke init` writes (text) or removes (text None), and why."""

    path: str
    text: str | None
    why: str


# -- the name ----------------------------------------------------------------------------------------------------


def name(root: Path = ROOT) -> str:
    """The project's name, from invoke.yaml.

    tasks.py calls this when it is imported, where invoke would swallow an Exit's message: a broken file stops the
    process with its one line (SystemExit) instead.
    """
    import yaml

    try:
        value = yaml.safe_load((root / SETTINGS).read_text())["runloop"]["name"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise SystemExit(
            f"{SETTINGS} gives no runloop.name ({type(exc).__name__}: {exc}) — restore it from git "
            f"(git checkout -- {SETTINGS}) or run `invoke init NAME` on a clean checkout."
        ) from None
    return str(value)


def tag_prefix(project: str | None = None) -> str:
    """What every run tag of the project starts with; the workflow runs for tags matching it + "*"."""
    return f"run-{project or name()}"


def package(project: str) -> str:
    """The Python package of the project's pipeline: src/<package>/."""
    return project.replace("-", "_")


def check_name(new: str) -> None:
    """Refuse a name that would not work everywhere it goes: a tag, an S3 prefix, a YAML value, a Python package."""
    import yaml

    if not (2 <= len(new) <= 32 and NAME.fullmatch(new)):
        why = "use 2 to 32 lowercase letters, digits and single dashes, starting with a letter (e.g. churn-model)"
    elif yaml.safe_load(new) != new:
        why = f"YAML reads it as {yaml.safe_load(new)!r}, not as a name; choose another"
    elif keyword.iskeyword(package(new)) or package(new) in TAKEN:
        why = f"src/{package(new)}/ cannot be the pipeline's package (a Python keyword, or the machinery's)"
    else:
        return
    raise Refused(f"{new!r} is not a usable project name — {why}.")


# -- every place that repeats it ---------------------------------------------------------------------------------


def read(root: Path = ROOT) -> dict[str, str]:
    """The texts of the files that name the project (those present), by path relative to `root`."""
    paths = [SETTINGS, PARAMS, DVC_CONFIG, README]
    workflows = root / WORKFLOWS
    paths += sorted(f"{WORKFLOWS}/{p.name}" for p in workflows.glob("*.y*ml")) if workflows.is_dir() else []
    return {path: (root / path).read_text() for path in paths if (root / path).is_file()}


def places(texts: Mapping[str, str], project: str) -> list[Place]:
    """Every copy of the name in `texts`, with what it should say for `project`."""
    import yaml

    found = [Place(SETTINGS, "runloop.name", _settings_name(texts.get(SETTINGS, "")), project)]
    params = yaml.safe_load(texts.get(PARAMS, "")) or {}
    for section, values in params.items() if isinstance(params, dict) else []:
        for key in NAMED_KEYS:
            if isinstance(values, dict) and key in values:
                found.append(Place(PARAMS, f"{section}.{key}", values[key], project))
    url = _remote_url(texts.get(DVC_CONFIG, ""))
    found.append(Place(DVC_CONFIG, f"remote {dvc_remote.NAME!r} url's last part", _last_part(url), project))
    for path, text in texts.items():
        if path.startswith(f"{WORKFLOWS}/") and (tags := _tag_filter(text)) is not None:
            found.append(Place(path, "name", (yaml.safe_load(text) or {}).get("name"), f"Run {project} pipeline"))
            found.append(Place(path, "on.push.tags", tags, [f"{tag_prefix(project)}*"]))
    found.append(Place(README, "title", _title(texts.get(README, "")), project))
    return found


def disagreements(root: Path = ROOT) -> list[str]:
    """Every copy of the name that is not invoke.yaml's, as "file what: says X, should say Y"."""
    return _wrong(places(read(root), name(root)))


def rename(texts: Mapping[str, str], new: str) -> dict[str, str]:
    """The texts with every copy of the name set to `new`; only the lines that hold one change."""
    old = _settings_name(texts.get(SETTINGS, "")) or ""
    out = dict(texts)
    if SETTINGS in out:
        out[SETTINGS] = re.sub(
            r"(?m)^(runloop:\n(?:[ \t]+.*\n|[ \t]*\n)*?[ \t]+name:[ \t]*)\S+", rf"\g<1>{new}", out[SETTINGS]
        )
    if PARAMS in out:
        indent = min(re.findall(r"(?m)^( +)\S", out[PARAMS]) or [" " * 2], key=len)
        keys = "|".join(NAMED_KEYS)
        pattern = rf"(?m)^({indent}(?:{keys}):[ \t]*)(\"[^\"\n]*\"|'[^'\n]*'|[^\s#]+)"
        out[PARAMS] = re.sub(pattern, rf"\g<1>{new}", out[PARAMS])
    if DVC_CONFIG in out:
        out[DVC_CONFIG] = _set_remote_prefix(out[DVC_CONFIG], new)
    for path, text in texts.items():
        if path.startswith(f"{WORKFLOWS}/") and _tag_filter(text) is not None:
            text = re.sub(r"(?m)^name:.*$", f"name: Run {new} pipeline", text, count=1)
            wanted = f'"{tag_prefix(new)}*"'
            if old:
                text = re.sub(rf"([\"']?){re.escape(tag_prefix(old))}\*\1", wanted, text)
            if _tag_filter(text) != [f"{tag_prefix(new)}*"]:  # a filter edited by hand: a one-line flow list
                text = re.sub(r"(?m)^([ \t]+tags:[ \t]*)\[.*\][ \t]*$", rf"\g<1>[{wanted}]", text, count=1)
            out[path] = text
    if README in out:
        title = re.match(r"# [^:\n]*(.*)\n", out[README])
        out[README] = f"# {new}{title.group(1)}\n{out[README][title.end() :]}" if title else f"# {new}\n\n{out[README]}"
    return out


def _wrong(found: list[Place]) -> list[str]:
    return [f"{p.file} {p.what}: says {p.says!r}, should say {p.wants!r}" for p in found if p.says != p.wants]


def _settings_name(text: str) -> str | None:
    import yaml

    try:
        return str(yaml.safe_load(text)["runloop"]["name"])
    except (yaml.YAMLError, KeyError, TypeError):
        return None


def _remote_url(text: str) -> str | None:
    """The url of the default remote in DVC's config (an INI file whose values are indented)."""
    section = ""
    for line in text.splitlines():
        if line.strip().startswith("["):
            section = line.strip()
        elif section == f"['remote \"{dvc_remote.NAME}\"']" and (m := re.match(r"\s*url\s*=\s*(\S+)", line)):
            return m.group(1)
    return None


def _last_part(url: str | None) -> str | None:
    path = (url or "").split("://", 1)[-1].rstrip("/")
    return path.rsplit("/", 1)[1] if "/" in path else None


def _set_remote_prefix(text: str, new: str) -> str:
    """DVC's config with the default remote's url ending in /<new>: same bucket, same folders above it."""
    url = _remote_url(text)
    if not url:
        return text
    scheme, _, path = url.rpartition("://")
    if scheme:  # s3://bucket[/folders]/<name>
        bucket, _, prefix = path.rstrip("/").partition("/")
        wanted = f"{scheme}://" + "/".join(filter(None, [bucket, prefix.rpartition("/")[0], new]))
    else:  # a local folder
        wanted = f"{path.rstrip('/').rpartition('/')[0]}/{new}"
    line = re.compile(rf"(?m)^([ \t]*url[ \t]*=[ \t]*){re.escape(url)}[ \t]*$")
    return line.sub(lambda m: m.group(1) + wanted, text, count=1)


def _tag_filter(text: str) -> list[str] | None:
    """A workflow's on.push.tags filter, or None for a workflow no tag starts."""
    import yaml

    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError:
        return None
    on = doc.get(True, doc.get("on")) if isinstance(doc, dict) else None  # YAML 1.1 reads the key `on` as True
    push = on.get("push") if isinstance(on, dict) else None
    return push.get("tags") if isinstance(push, dict) else None


def _title(text: str) -> str | None:
    match = re.match(r"# ([^:\n]*)", text)
    return match.group(1).strip() if match else None


# -- invoke init ---------------------------------------------------------------------------------------------------


def check_can_commit(git: Git) -> None:
    """Refuse what would leave init's work half done: not a repository, a dirty tree, no git identity."""
    if git("rev-parse", "--is-inside-work-tree") != "true":
        raise Refused("Not inside a git repository — run `invoke init` in a clone of the template.")
    changes = git.uncommitted()
    stray = lock.left_by_repro(changes)
    if stray and len(changes) == 1:
        raise Refused(
            f"{lock.DVC_LOCK} was left by a local `invoke repro` (the results of the pipeline init replaces or "
            f"renames; the runner makes its own) — {stray}, then run `invoke init` again."
        )
    if changes:
        also = f" ({lock.DVC_LOCK}, a local `invoke repro`'s: {stray})" if stray else ""
        raise Refused(
            f"The working tree has uncommitted or untracked changes ({listed([path for _, path in changes])}) — "
            f"commit or stash them first{also}: `invoke init` makes one commit of its own."
        )
    if git("var", "GIT_COMMITTER_IDENT") is None:
        raise Refused(
            "git does not know who you are, so init could not commit — set it: "
            "git config --global user.name 'Your Name' && git config --global user.email you@example.com"
        )


def plan(git: Git, new: str, keep_example: bool, root: Path = ROOT) -> list[Change]:
    """What `invoke init NEW` changes: the copies of the name, and (unless kept) the example made a skeleton."""
    texts = read(root)
    renamed = rename(texts, new)
    changes: list[Change] = []
    replacing = not keep_example and (root / EXAMPLE[0]).is_dir()
    if replacing:
        _check_only_example_stages(root)
        if (root / "src" / package(new)).exists():
            raise Refused(
                f"src/{package(new)}/ exists already — init would write the skeleton there: choose another name, "
                "or pass --keep-example to only rename."
            )
        for path, text in skeleton.files(new, package(new), root).items():
            renamed.pop(path, None)
            why = "the skeleton's, in place of the example's" if (root / path).exists() else "new: the skeleton"
            changes.append(Change(path, text, why))
        changes += [Change(d, None, "the example pipeline and its tests") for d in EXAMPLE if (root / d).exists()]
        if git("ls-files", "--error-unmatch", "dvc.lock") is not None:
            changes.append(Change("dvc.lock", None, "it locks the example's stages"))
    for path, text in renamed.items():
        if text != texts[path]:
            moved = [p for p in places({path: texts[path]}, new) if p.file == path and p.says != p.wants]
            changes.append(Change(path, text, "; ".join(f"{p.what}: {p.says} → {p.wants}" for p in moved)))
    final = {**texts, **{ch.path: ch.text for ch in changes if ch.text is not None and ch.path in texts}}
    if wrong := _wrong(places(final, new)):
        raise Refused(
            f"init cannot set the name everywhere ({'; '.join(wrong)}) — set these by hand (the README's "
            "'Starting your project' lists every place), then run init again."
        )
    return sorted(changes, key=lambda ch: ch.path)


def _check_only_example_stages(root: Path) -> None:
    import yaml

    stages = (yaml.safe_load((root / "dvc.yaml").read_text()) or {}).get("stages", {})
    others = [stage for stage, spec in stages.items() if EXAMPLE_MODULE not in str(spec.get("cmd", ""))]
    if others:
        raise Refused(
            f"dvc.yaml has stages that are not the example's ({', '.join(others)}) — pass --keep-example to keep "
            "the pipeline as it is (init then only renames), or remove src/example/ and its stages yourself."
        )


def message(new: str, changes: list[Change]) -> str:
    """The commit message: what init did, one line per file."""
    lines = [f"{'remove' if ch.text is None else 'write'} {ch.path}: {ch.why}" for ch in changes]
    return f"Start project {new} from the template (invoke init)\n\n" + "\n".join(lines) + "\n"


def apply(git: Git, changes: list[Change], text: str, root: Path = ROOT) -> str:
    """Make the changes and commit them as one commit; the commit."""
    for change in changes:
        path = root / change.path
        if change.text is None:
            git.must(f"Removing {change.path}", "rm", "-r", "--quiet", "--", change.path)
            if path.is_dir():
                shutil.rmtree(path)  # what git did not track there (__pycache__)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(change.text)
    git.must("Staging the changes", "add", "--", *[ch.path for ch in changes if ch.text is not None])
    done = git.run("commit", "--quiet", "--cleanup=verbatim", "--file=-", input=text)
    if done.returncode != 0:
        raise Refused(
            f"Committing failed ({last_lines(done.stderr or done.stdout, 3)}) — the changes are staged: fix that and "
            "`git commit`, or drop them with `git reset --hard HEAD`."
        )
    return git("rev-parse", "HEAD") or ""


def next_steps(git: Git, new: str, commit: str, kept_example: bool) -> str:
    """What to do after init: run the checks, push to the project's own repository, set its secrets, tag a run."""
    branch = git.branch() or "main"
    remotes = (git("remote") or "").split()
    secrets, variables = ci.settings_named("secret"), ci.settings_named("repository variable")
    rename_origin = "git remote rename origin template && " if "origin" in remotes and "template" not in remotes else ""
    pipeline = "src/example/" if kept_example else f"src/{package(new)}/ (the skeleton's stage `train`)"
    return "\n".join(
        [
            f"Made {commit[:12]}: project {new}; run tags are {tag_prefix(new)}-<branch>-<time>.",
            "Next:",
            f"  1. Check it: {CHECK}",
            f"  2. Your repository (keep the template as a remote, for its fixes): {rename_origin}"
            f"git remote add origin <your repository's URL> && git push -u origin {branch}",
            f"  3. In its Settings → Secrets and variables → Actions: secrets {', '.join(secrets)}; variables "
            f"{', '.join(variables)}. On MinIO: the bucket of {DVC_CONFIG}'s url.",
            f"  4. Your pipeline in {pipeline}, dvc.yaml and params.yaml; `invoke repro`; commit, push; "
            "`invoke tag-run`.",
        ]
    )
