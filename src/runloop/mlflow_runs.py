"""The MLflow runs of run tags, found by their `run_tag` tag, with what they made: sized, and deleted.

Each stage's MLflow run is tagged `run_tag=<the run's tag>` (tracking.run_tags). What it made lives in three places:
its artifacts (under the run's artifact URI), the models it logged (MLflow 3's logged models, each under an artifact
location of its own) and the versions of registered models made from them.

    tagged(client, tags)       every MLflow run tagged with one of these run tags (deleted ones too), with what it
                               made, sized: a `Made` each
    delete(client, made)       the versions, the logged models' artifacts and the models, the run's artifacts, then
                               the run: stopped anywhere, the next call finds what is left (by the same tag) and
                               finishes

The caller passes a client (registry.connect) and wraps the calls in registry.speaking: MLflow's errors quote URLs.
mlflow is imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

TAG = "run_tag"  # tracking.run_tags names the launch
PARENT = "mlflow.parentRunId"
PAGE = 1000
SIZERS = 8


@dataclass(frozen=True)
class Version:
    """A registered model's version."""

    name: str
    version: str
    aliases: tuple[str, ...] = ()

    def __str__(self) -> str:
        aliases = f" (alias {', '.join(self.aliases)})" if self.aliases else ""
        return f"{self.name} version {self.version}{aliases}"


@dataclass(frozen=True)
class Model:
    """A logged model (MLflow 3): its id and where its artifacts are."""

    model_id: str
    location: str
    size: int = 0


@dataclass(frozen=True)
class Made:
    """One MLflow run and what it made."""

    run_id: str
    tag: str  # its run_tag
    experiment_id: str
    artifact_uri: str
    deleted: bool  # MLflow's lifecycle stage says deleted already (its artifacts may still be there)
    parent: str | None = None
    artifacts: int = 0  # bytes under its artifact URI
    models: tuple[Model, ...] = ()
    versions: tuple[Version, ...] = field(default_factory=tuple)

    @property
    def size(self) -> int:
        return self.artifacts + sum(m.size for m in self.models)

    @property
    def aliased(self) -> list[Version]:
        """Its versions that an alias points at: a deployment may load them."""
        return [v for v in self.versions if v.aliases]


def _pages(search, **kwargs) -> Iterator[Any]:
    token = None
    while True:
        page = search(**kwargs, page_token=token)
        yield from page
        token = getattr(page, "token", None)
        if not token:
            return


def tagged(client: Any, tags: Iterable[str], prefix: str) -> list[Made]:
    """Every MLflow run whose run_tag is one of `tags` (each begins with `prefix`), in any experiment, deleted runs
    too, with its artifacts' bytes, its logged models and the registered versions made from it."""
    from mlflow.entities import ViewType

    wanted = set(tags)
    if not wanted:
        return []
    experiments = [e.experiment_id for e in _pages(client.search_experiments, view_type=ViewType.ALL)]
    if not experiments:
        return []
    like = prefix.replace("'", "''")
    found = [
        r
        for r in _pages(
            client.search_runs,
            experiment_ids=experiments,
            filter_string=f"tags.{TAG} LIKE '{like}%'",
            run_view_type=ViewType.ALL,
            max_results=PAGE,
        )
        if r.data.tags.get(TAG) in wanted
    ]
    if not found:
        return []
    ids = {r.info.run_id for r in found}
    logged = [
        m
        for m in _pages(client.search_logged_models, experiment_ids=sorted({r.info.experiment_id for r in found}))
        if m.source_run_id in ids
    ]
    found_versions = [v for v in _pages(client.search_model_versions, max_results=PAGE) if v.run_id in ids]
    # A search leaves the aliases out; the registered model has them all.
    aliases = {name: client.get_registered_model(name).aliases for name in {v.name for v in found_versions}}
    versions: dict[str, list[Version]] = {}
    for v in found_versions:
        named = tuple(sorted(a for a, number in aliases[v.name].items() if str(number) == str(v.version)))
        versions.setdefault(v.run_id, []).append(Version(v.name, str(v.version), named))
    uris = [r.info.artifact_uri for r in found] + [m.artifact_location for m in logged]
    with ThreadPoolExecutor(max_workers=SIZERS) as pool:  # a listing per run and model: a few at a time
        sizes = dict(zip(uris, pool.map(_size, uris), strict=True))
    models: dict[str, list[Model]] = {}
    for m in logged:
        models.setdefault(m.source_run_id, []).append(
            Model(m.model_id, m.artifact_location, sizes[m.artifact_location])
        )
    return [
        Made(
            run_id=r.info.run_id,
            tag=r.data.tags[TAG],
            experiment_id=r.info.experiment_id,
            artifact_uri=r.info.artifact_uri,
            deleted=r.info.lifecycle_stage == "deleted",
            parent=r.data.tags.get(PARENT),
            artifacts=sizes[r.info.artifact_uri],
            models=tuple(models.get(r.info.run_id, [])),
            versions=tuple(versions.get(r.info.run_id, [])),
        )
        for r in found
    ]


def _size(uri: str) -> int:
    """The bytes of every artifact under `uri` (0 when there is none, or the store cannot list it)."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    repository = get_artifact_repository(uri)
    total, folders = 0, [None]
    while folders:
        folder = folders.pop()
        for info in repository.list_artifacts(folder):
            if info.is_dir:
                folders.append(info.path)
            else:
                total += info.file_size or 0
    return total


def delete(client: Any, made: Made) -> None:
    """Delete an MLflow run and what it made, in an order that a stop anywhere leaves findable: its versions, its
    logged models' artifacts and the models, its own artifacts, and last the run (still tagged with its run_tag,
    so the next search finds what is left)."""
    from mlflow.exceptions import MlflowException
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    for version in made.versions:
        try:
            client.delete_model_version(version.name, version.version)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
    for model in made.models:
        get_artifact_repository(model.location).delete_artifacts()
        try:
            client.delete_logged_model(model.model_id)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
    get_artifact_repository(made.artifact_uri).delete_artifacts()
    if not made.deleted:
        client.delete_run(made.run_id)
