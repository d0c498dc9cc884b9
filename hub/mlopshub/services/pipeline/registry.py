"""The MLflow Model Registry as the pipeline uses it: versions, aliases, tags, and local copies to gate and serve.

Every call names its tracking server explicitly (an ``MlflowClient`` with a
URI, ``download_artifacts(tracking_uri=...)``): nothing here reads or sets
MLflow's process-wide tracking URI. Calls block; the runner makes them in a
worker thread.

Teams are MLflow workspaces. Each call that touches a team's runs or models
names the team, and is made inside :meth:`Registry.workspace`, which sets MLflow's
request-scoped workspace (a context variable, sent as ``X-MLFLOW-WORKSPACE``)
and never the process-wide ``MLFLOW_WORKSPACE``: two releases of two teams
may be in flight at once. The pipeline authenticates to MLflow as the auth
store's admin (``MLFLOW_TRACKING_USERNAME``/``PASSWORD``), which may act in
every workspace.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

from mlflow.exceptions import MlflowException
from mlflow.store.artifact.artifact_repo import ArtifactRepository
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.tracking import MlflowClient
from mlflow.utils.workspace_context import ServerWorkspaceContext

from mlopshub import mlflow_private
from mlopshub.pipeline import InvalidRequest, PublishRequest
from mlopshub.pipeline.gates import DATA_TAG

TEAM_TAG = "mlopshub.team"
PUBLISHER_TAG = "mlopshub.publisher"
APPROVER_TAG = "mlopshub.approver"
RELEASE_TAG = "mlopshub.release"
RUN_TAG = "mlopshub.run_id"
COMMIT_TAG = "mlopshub.git.commit"
#: MLflow tag values are limited; longer values are cut to this.
MAX_TAG = 5000


class Registry:
    """The registry of the tracking server at ``tracking_uri``; downloaded versions go under ``cache_dir``.

    ``workspaces`` says whether the server runs with MLflow workspaces (the
    platform does): then a run belongs to the workspace it is found in;
    without, to the team its ``mlopshub.team`` tag names.
    """

    def __init__(self, tracking_uri: str, cache_dir: str | Path, *, workspaces: bool = False):
        self.tracking_uri = tracking_uri
        self.workspaces = workspaces
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self.cache_dir = Path(cache_dir)

    @contextmanager
    def workspace(self, team: str | None) -> Iterator[None]:
        """MLflow calls inside the block go to ``team``'s workspace (this thread or task only)."""
        if not (team and self.workspaces):
            yield
            return
        with ServerWorkspaceContext(team):
            yield

    # --- runs ---

    def run_tags(self, run_id: str, team: str | None = None) -> dict[str, str]:
        """The tags of run ``run_id`` (lineage: git commit, DVC data versions)."""
        with self.workspace(team):
            return dict(self.client.get_run(run_id).data.tags)

    def team_of_run(self, run_id: str, teams: Iterable[str | None] = (None,)) -> str | None:
        """The team owning run ``run_id``, looked for in the workspaces of ``teams`` in order; None if no run.

        With workspaces, the workspace the run is found in is the team (a run
        is not visible from another workspace); without them, a
        ``mlopshub.team`` tag on the run or its experiment.
        """
        for team in teams if self.workspaces else (None,):
            with self.workspace(team):
                try:
                    run = self.client.get_run(run_id)
                except MlflowException:
                    continue
                if self.workspaces:
                    return team
                experiment = self.client.get_experiment(run.info.experiment_id)
            return run.data.tags.get(TEAM_TAG) or experiment.tags.get(TEAM_TAG)
        return None

    # --- versions ---

    def register(self, request: PublishRequest, publisher: str, release_id: str) -> str:
        """Create a version of ``request.name`` from the request's run model, tagged with its lineage; its number."""
        with self.workspace(request.team):
            return self._register(request, publisher, release_id)

    def _register(self, request: PublishRequest, publisher: str, release_id: str) -> str:
        # The model is found before anything is created: a request naming nothing leaves no registered model.
        run = self.client.get_run(request.run_id)
        source, model_id = self._source(request, run.info.experiment_id)
        created = False
        try:
            self.client.create_registered_model(request.name, tags={TEAM_TAG: request.team})
            created = True
        except MlflowException as error:
            if error.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
                raise
        tags = {
            TEAM_TAG: request.team,
            PUBLISHER_TAG: publisher,
            RELEASE_TAG: release_id,
            RUN_TAG: request.run_id,
            COMMIT_TAG: run.data.tags.get(COMMIT_TAG, ""),
            **{key: value for key, value in run.data.tags.items() if key.startswith(DATA_TAG)},
        }
        try:
            version = self.client.create_model_version(
                request.name,
                source=source,
                run_id=request.run_id,
                tags={key: str(value)[:MAX_TAG] for key, value in tags.items()},
                description=request.description,
                model_id=model_id,
            )
        except Exception:
            if created:
                self.client.delete_registered_model(request.name)
            raise
        return str(version.version)

    def discard(self, team: str | None, name: str, version: str) -> None:
        """Delete a version that was registered for a release that could not be recorded (and its model, if empty)."""
        with self.workspace(team):
            self.client.delete_model_version(name, str(version))
            if not self.client.search_model_versions(f"name = '{name}'", max_results=1):
                self.client.delete_registered_model(name)

    def _source(self, request: PublishRequest, experiment_id: str) -> tuple[str, str | None]:
        """Where the model's files are, and its logged-model id (MLflow 3 keeps models outside the run)."""
        if request.source_model:
            version = self.client.get_model_version(request.source_model, request.source_version or "")
            return version.source, getattr(version, "model_id", None)
        path = request.artifact_path or ""
        found = self.client.search_logged_models(
            experiment_ids=[experiment_id],
            filter_string=f"name = '{path}' AND source_run_id = '{request.run_id}'",
        )
        if found:
            model = found[0]
            return f"models:/{model.model_id}", model.model_id
        # A model saved into the run's artifacts (MLflow 2 style, or log_artifacts of a model folder).
        if not any(info.path.endswith("MLmodel") for info in self.client.list_artifacts(request.run_id, path)):
            raise InvalidRequest(
                "model_uri", f"run {request.run_id} has no logged model named {path!r} (no MLmodel at that path)"
            )
        return f"runs:/{request.run_id}/{path}", None

    def tag_version(self, team: str | None, name: str, version: str, tags: Mapping[str, Any]) -> None:
        """Set tags on one version."""
        with self.workspace(team):
            for key, value in tags.items():
                self.client.set_model_version_tag(name, version, key, str(value)[:MAX_TAG])

    def set_alias(self, team: str | None, name: str, alias: str, version: str) -> None:
        """Point ``@alias`` of ``name`` at ``version``."""
        with self.workspace(team):
            self.client.set_registered_model_alias(name, alias, version)

    def delete_alias(self, team: str | None, name: str, alias: str) -> None:
        """Remove ``@alias`` of ``name`` (no error when it is not set)."""
        with self.workspace(team):
            try:
                self.client.delete_registered_model_alias(name, alias)
            except MlflowException as error:
                if error.error_code not in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
                    raise

    def alias(self, team: str | None, name: str, alias: str) -> str | None:
        """The version ``@alias`` of ``name`` points at, or None."""
        with self.workspace(team):
            try:
                return str(self.client.get_model_version_by_alias(name, alias).version)
            except MlflowException:
                return None

    def storage_uri(self, team: str | None, name: str, version: str, artifacts_destination: str = "") -> str:
        """Where version ``version`` of ``name``'s files are, for a predictor to fetch (``s3://...``).

        MLflow serving artifacts itself answers ``mlflow-artifacts:/<path>``,
        which only MLflow can read; ``artifacts_destination`` (its
        ``--artifacts-destination``, e.g. ``s3://mlopshub-mlflow/artifacts``)
        turns that into the object store's own address.
        """
        with self.workspace(team):
            source = str(self.client.get_model_version_download_uri(name, str(version)))
        if source.startswith("mlflow-artifacts:"):
            if not artifacts_destination:
                raise ValueError(
                    f"models:/{name}/{version} is stored at {source}, which only MLflow can read; set "
                    "MLOPSHUB_ARTIFACTS_DESTINATION to MLflow's --artifacts-destination (s3://<bucket>/<path>)"
                )
            path = urlparse(source).path.lstrip("/")
            return f"{artifacts_destination.rstrip('/')}/{path}"
        return source

    def local_copy(self, team: str | None, name: str, version: str, *, fresh: bool = False) -> Path:
        """A local folder with version ``version`` of ``name``, downloaded when missing (or always, ``fresh``).

        The runner seals the folder and checks it against the digest recorded
        at registration before anything loads it; ``fresh`` replaces whatever
        lies at the path, which is how the copy a digest is taken of is made.
        """
        target = self.copy_path(team, name, version)
        if not fresh and (target / "MLmodel").is_file():
            return target
        with self.workspace(team):
            return self._download(name, version, target)

    def copy_path(self, team: str | None, name: str, version: str) -> Path:
        """Where the pipeline keeps its copy of version ``version`` of ``name``."""
        return self.cache_dir / (team or "_") / name / str(version)

    def _download(self, name: str, version: str, target: Path) -> Path:
        partial = target.with_name(f"{target.name}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        # The version's own files, not models:/<name>/<version>: MLflow resolves that URI with the
        # process-wide registry, not the one given here.
        source = self.client.get_model_version_download_uri(name, str(version))
        repository = get_artifact_repository(source, tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        # A models:/ URI resolves to the repository where the files are.
        _fetch_tree(getattr(repository, "repo", repository), "", partial)
        # download_artifacts may put the model in a subfolder; keep the folder that holds MLmodel.
        found = next(iter(sorted(partial.rglob("MLmodel"), key=lambda p: len(p.parts))), None)
        if found is None:
            shutil.rmtree(partial, ignore_errors=True)
            raise FileNotFoundError(f"models:/{name}/{version} has no MLmodel file; was it logged as an MLflow model?")
        if target.is_symlink():
            target.unlink()
        shutil.rmtree(target, ignore_errors=True)
        found.parent.rename(target)
        shutil.rmtree(partial, ignore_errors=True)
        return target


def _fetch_tree(repository: ArtifactRepository, path: str, destination: Path) -> None:
    """Download ``path`` of ``repository`` into ``destination``, one file after another, in this thread.

    Not ``download_artifacts``: it fetches in a thread pool, whose threads do
    not see the workspace this thread is working in, and the server refuses
    a workspace's files asked for without it. Its checks are kept: a listed
    entry that would land outside ``destination`` (``..``, an absolute path,
    a path not under the folder listed) is refused, and a folder listed
    inside itself is skipped.
    """
    for info in repository.list_artifacts(path or None):
        if info.path in (".", path):
            continue
        local = destination.joinpath(*_listed_parts(info.path, path))
        if info.is_dir:
            local.mkdir(parents=True, exist_ok=True)
            _fetch_tree(repository, info.path, local)
        else:
            local.parent.mkdir(parents=True, exist_ok=True)
            mlflow_private.download_file(repository, info.path, str(local))


def _listed_parts(listed: str, folder: str) -> tuple[str, ...]:
    """The parts of ``listed`` below ``folder``; ValueError when it is not a path inside it."""
    relative = PurePosixPath(listed)
    try:
        relative = relative.relative_to(folder) if folder else relative
    except ValueError:
        relative = PurePosixPath("/")
    if relative.is_absolute() or not relative.parts or ".." in relative.parts:
        raise ValueError(
            f"MLflow listed the artifact {listed!r} under {folder or 'the root'!r}: not a path inside it; "
            "nothing outside the model's folder is downloaded"
        )
    return relative.parts
