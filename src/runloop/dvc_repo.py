"""DVC asked in this process: one import and one repository opened for everything a task asks of it.

Every `python -m dvc …` is a fresh interpreter that imports DVC and reads the repository again (about a second
each); `invoke share` used to start six to eight of them. Here a task opens the repository once (`opened()`) and
asks it everything: is every stage up to date, which outputs the remote cannot carry or does not hold yet, the
metrics and params (rendered by DVC's own table code, so they read exactly as `dvc metrics show` and `dvc params
diff` print them), the comparison of two revisions, the push itself. A repository DVC cannot read is one line.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from src.runloop import environment
from src.runloop.lock import Output
from src.runloop.refusal import Refused

# A `dvc` command as a process, with this interpreter's DVC (for what has no Python API here: plots diff).
COMMAND = [sys.executable, "-m", "dvc"]
# As `dvc metrics show` and `dvc metrics diff` print numbers (DVC's DEFAULT_PRECISION, rounded).
PRECISION = 5


class Dvc:
    """The project's DVC repository, opened once; see `opened()`."""

    def __init__(self, repo: Any, root: Path) -> None:
        self.repo = repo
        self.root = root
        self._metrics: dict[str, Any] | None = None

    # -- the pipeline in this checkout ---------------------------------------------------------------------------

    def outputs(self) -> list[Output]:
        """Every output the pipeline declares (outs, metrics, plots)."""
        outs = self.repo.index.outs
        return [
            Output(self._rel(out.fs_path), out.stage.addressing, cache=out.use_cache, push=out.can_push) for out in outs
        ]

    def stale(self) -> list[str]:
        """One line per stage that `dvc status` does not call up to date (changed, never run, or outputs missing)."""
        found = self.repo.status()
        return [f"{stage} ({'; '.join(_describe(change) for change in changes)})" for stage, changes in found.items()]

    # -- metrics and params -------------------------------------------------------------------------------------

    def metrics(self) -> dict[str, Any]:
        """The working tree's metrics: {file: {key: value}}, as `dvc metrics show --json` has them.

        Asked of DVC once (each ask rebuilds its index: 40 ms of a no-op `invoke repro`): the tasks open a Dvc after
        the pipeline ran, and nothing they do with it changes a metric.
        """
        if self._metrics is None:
            shown = self.repo.metrics.show()
            data = (shown.get("") or next(iter(shown.values()), {})).get("data", {})
            self._metrics = {self._rel(path): content.get("data", {}) for path, content in data.items()}
        return self._metrics

    def metric_lines(self) -> list[str]:
        """The metrics as `file key: value` lines, nested keys dotted."""
        lines: list[str] = []

        def walk(path: str, prefix: str, value: Any) -> None:
            if isinstance(value, dict):
                for k, v in value.items():
                    walk(path, f"{prefix}.{k}" if prefix else str(k), v)
            else:
                lines.append(f"{path} {prefix}: {value}")

        for path, values in self.metrics().items():
            walk(path, "", values)
        return lines

    def metrics_table(self, md: bool = False) -> str:
        """`dvc metrics show [--md]`, as DVC prints it."""
        from dvc.compare import metrics_table

        shown = {"": {"data": {path: {"data": values} for path, values in self.metrics().items()}}}
        return _rendered(metrics_table(shown, precision=PRECISION, round_digits=True), md)

    def params_table(self, md: bool = False) -> str:
        """`dvc params diff --all [--md]`: every param, as DVC prints it."""
        from dvc.compare import diff_table

        found = self.repo.params.diff(all=True).get("diff", {})
        table = diff_table({self._rel(p): v for p, v in found.items()}, title="Param", show_changes=False)
        return _rendered(table, md)

    def diff(self, old: str, new: str | None, md: bool = False) -> tuple[str, str, dict[str, Any]]:
        """DVC's params diff and metrics diff --all from `old` to `new` (None: the working tree), as it prints them,
        and the metrics diff itself ({file: {key: {old, new, diff}}})."""
        from dvc.compare import diff_table

        revs = {"a_rev": old, "b_rev": new or "workspace"}
        params = {self._rel(p): v for p, v in self.repo.params.diff(**revs).get("diff", {}).items()}
        metrics = {self._rel(p): v for p, v in self.repo.metrics.diff(**revs, all=True).get("diff", {}).items()}
        shown = {"a_rev": old, "b_rev": new}
        return (
            _rendered(diff_table(params, title="Param", show_changes=False, **shown), md),
            _rendered(diff_table(metrics, title="Metric", precision=PRECISION, round_digits=True, **shown), md),
            metrics,
        )

    # -- the remote ---------------------------------------------------------------------------------------------

    def configure_remote(self, name: str, settings: Mapping[str, str | None]) -> None:
        """Write the remote's machine-specific settings to .dvc/config.local (never a credential)."""
        wanted = {k: v for k, v in settings.items() if v}
        if not wanted:
            return
        with self.repo.config.edit("local") as conf:
            conf.setdefault("remote", {}).setdefault(name, {}).update(wanted)

    def fetch(self, revs: list[str], types: list[str]) -> str | None:
        """Fetch the outputs of those kinds (metrics, plots) the revisions record; None, or why it failed."""
        try:
            self.repo.fetch(revs=revs, types=types, workspace=False)
        except Exception as exc:  # noqa: BLE001 - the remote's own error, said in one line
            return environment.one_line(environment.scrub(str(exc)))
        return None

    def push(self) -> tuple[int, list[str]]:
        """`dvc push --run-cache`: the outputs and the run cache to the default remote. How many files went, and the
        content hashes (md5) the remote still lacks because this cache lacks them too.

        A push that could not send a file raises (DVC's UploadError); one that found an object in neither the cache
        nor the remote only warns and pushes the rest. DVC's push compares the cache with the remote itself, so its
        own account of what is missing is the check: no second listing of the remote (`dvc status --cloud` took 0.7 s
        for 10,000 files)."""
        lacking = _Lacking()
        log = logging.getLogger("dvc_data.index.fetch")  # where DVC's push says what neither side has
        log.addHandler(lacking)
        try:
            return self.repo.push(run_cache=True), lacking.hashes
        finally:
            log.removeHandler(lacking)

    def _rel(self, path: str) -> str:
        return Path(path).relative_to(self.root).as_posix() if Path(path).is_absolute() else path


@contextlib.contextmanager
def opened(root: Path | None = None, locked: bool = False) -> Iterator[Dvc]:
    """The project's DVC repository, open for this block; DVC's own errors become one line.

    `locked`: hold DVC's repository lock for the whole block, so no other DVC process changes the pipeline
    meanwhile and DVC builds its index once; released between operations, it drops the index after each (status,
    metrics, push, the remote check: ~60 ms apiece in `invoke share`). For blocks that change no dvc.yaml/dvc.lock
    and no DVC config (DVC reads its config once too: write .dvc/config.local before opening).
    """
    environment.quiet()
    root = root or environment.ROOT
    from dvc.exceptions import DvcException
    from dvc.repo import Repo, lock_repo

    with _dvc_log_in_one_line():
        try:
            with Repo(str(root)) as repo, lock_repo(repo) if locked else contextlib.nullcontext():
                yield Dvc(repo, root)
        except DvcException as exc:
            said = environment.one_line(environment.scrub(str(exc)))
            raise Refused(f"DVC failed: {said} — fix what it names, then run this again.") from None


class _Lacking(logging.Handler):
    """The content hashes DVC's push reports as in neither the cache nor the remote ("Missing cache files:")."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.hashes: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "Missing cache files" in str(record.msg):
            listed = "\n".join(str(arg) for arg in record.args or ())
            self.hashes += [line.rpartition(": ")[2].strip() for line in listed.splitlines() if line.strip()]


class _OneLine(logging.Handler):
    """DVC's warnings and errors as its CLI words them ("WARNING: …"), one line each, no traceback, no secret."""

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text = f"{text} - {record.exc_info[1]}" if text else str(record.exc_info[1])
        print(f"{record.levelname}: {environment.one_line(environment.scrub(text), 500)}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _dvc_log_in_one_line() -> Iterator[None]:
    log = logging.getLogger("dvc")
    handler, before = _OneLine(logging.WARNING), (log.level, log.propagate)
    log.addHandler(handler)
    log.setLevel(logging.WARNING)
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(before[0])
        log.propagate = before[1]


def _describe(change: Any) -> str:
    if isinstance(change, dict):  # {"changed outs": {"models/model.pkl": "not in cache"}}
        return "; ".join(
            f"{kind}: " + ", ".join(f"{p} {s}" for p, s in paths.items()) for kind, paths in change.items()
        )
    return str(change)  # "always changed", "changed command"


def _rendered(table: Any, md: bool) -> str:
    """A DVC table as DVC's own renderer prints it (`dvc … --md` or plain)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        table.render(markdown=md)
    return out.getvalue().rstrip("\n")
