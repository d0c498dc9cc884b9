"""What the pipeline applies in Kubernetes mode for a release at a stage, and a deployer that applies it.

:func:`release_objects` is pure: a release (the API's JSON shape or a
:class:`~mlopshub.pipeline.Release`) and a stage give the objects:

=========  =======================================  ===========================================
kind       staging                                  production
=========  =======================================  ===========================================
online     InferenceService ``<model>-staging``     InferenceService ``<model>-production``
batch      Job ``<model>-v<version>-staging``       CronJob ``<model>-batch`` on the release's
           (one scoring run)                        schedule (none without a schedule)
=========  =======================================  ===========================================

(``<model>`` as :mod:`.names` makes it valid for each kind: lower case, cut
to fit, with a hash of the model's name when it had to change.)

:class:`ManifestDeployer` writes them as YAML to
``<folder>/<model>-<stage>.yaml`` (teams that deploy through git read these
files) and, unless only writing (``MLOPSHUB_APPLY=false``), applies the same
objects through the Kubernetes API (:class:`~mlopshub.serving.apply.ServerSideApply`);
:meth:`ManifestDeployer.delete` deletes the objects its file names, then the file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from .apply import ServerSideApply
from .kserve import NAMESPACE, STAGES, batch_cronjob, batch_job, inference_service

#: Where scoring Jobs write in the cluster (a volume of the hub image; the output folder of each model is below).
OUTPUT_ROOT = "/scores"


def _as_mapping(release: Any) -> Mapping[str, Any]:
    if is_dataclass(release) and not isinstance(release, type):
        return asdict(release)
    if isinstance(release, Mapping):
        return release
    raise TypeError(f"expected a release (its JSON object or a Release), got {type(release).__name__}")


def release_objects(
    release: Any, stage: str, *, storage_uri: str = "", namespace: str = NAMESPACE, output_root: str = OUTPUT_ROOT
) -> list[dict[str, Any]]:
    """The Kubernetes objects serving ``release`` at ``stage`` (see the module's table).

    ``storage_uri`` is where an online model's files are (``s3://...``, the
    registry version's source); batch jobs load ``models:/<name>/<version>``
    from MLflow.
    """
    data = _as_mapping(release)
    if stage not in STAGES:
        raise ValueError(f"stage '{stage}': expected one of {', '.join(STAGES)}")
    model, version, team = str(data["model_name"]), str(data["version"]), str(data["team"])
    if data.get("kind") == "online":
        if not storage_uri:
            raise ValueError(f"an online model needs the storage URI of {model} version {version} (s3://...)")
        return [inference_service(model, version, storage_uri, team, stage, namespace)]
    batch = data.get("batch")
    if not batch:
        raise ValueError(f"release {data.get('id')} of {model} is batch but has no 'batch' settings (input, rev)")
    uri = f"models:/{model}/{version}"
    output = f"{output_root.rstrip('/')}/{model}/{stage}"
    common = {"namespace": namespace, "repo": batch.get("repo")}
    if stage == "staging":
        return [batch_job(model, version, uri, team, batch["input"], batch["rev"], output, stage, **common)]
    if not batch.get("schedule"):
        return []  # run on demand only: nothing stays in the cluster
    schedule = str(batch["schedule"])
    return [batch_cronjob(model, version, uri, team, batch["input"], batch["rev"], output, schedule, **common)]


def to_yaml(objects: Sequence[Mapping[str, Any]]) -> str:
    """``objects`` as one multi-document YAML text (what ``kubectl apply -f`` or a GitOps tool reads)."""
    return "".join(f"---\n{yaml.safe_dump(dict(o), sort_keys=False)}" for o in objects)


def read_objects(path: Path) -> list[dict[str, Any]]:
    """The objects a file written by :func:`to_yaml` holds."""
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


class ManifestDeployer:
    """Writes a release's objects to ``<folder>/<model>-<stage>.yaml``; applies them when given ``api``.

    ``api`` reaches the cluster (:class:`~mlopshub.serving.apply.ServerSideApply`);
    None: write only (a reviewer or GitOps applies the files).
    """

    def __init__(self, folder: str | Path, api: ServerSideApply | None = None):
        self.folder = Path(folder)
        self.api = api

    @classmethod
    def from_env(cls, folder: str | Path, env: Mapping[str, str]) -> ManifestDeployer:
        """The deployer the pipeline's environment asks for; ValueError naming a bad ``MLOPSHUB_APPLY``.

        ``MLOPSHUB_APPLY``: ``true`` (default) applies through the Kubernetes
        API, reached with ``MLOPSHUB_KUBECONFIG`` (unset: the pod's
        ServiceAccount); ``false`` only writes the files.
        """
        setting = env.get("MLOPSHUB_APPLY", "true").strip().lower()
        if setting not in ("true", "false"):
            raise ValueError(f"MLOPSHUB_APPLY={setting!r}: expected true (apply through the API) or false (only write)")
        if setting == "false":
            return cls(folder)
        return cls(folder, ServerSideApply(env.get("MLOPSHUB_KUBECONFIG") or None))

    def path(self, model: str, stage: str) -> Path:
        """The file of ``model``'s objects at ``stage``."""
        return self.folder / f"{model}-{stage}.yaml"

    async def deploy(self, release: Any, stage: str, *, storage_uri: str = "") -> Path:
        """Write (and apply) the objects of ``release`` at ``stage``; the file written.

        :class:`~mlopshub.serving.apply.ApplyFailed` naming the object the API refused.
        """
        data = _as_mapping(release)
        objects = release_objects(data, stage, storage_uri=storage_uri)
        target = self.path(str(data["model_name"]), stage)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".yaml.partial")
        partial.write_text(to_yaml(objects))
        partial.replace(target)
        if self.api is not None and objects:
            await self.api.apply(objects)
        return target

    async def delete(self, model: str, stage: str) -> None:
        """Delete ``model``'s objects at ``stage`` (those its file names), then their file; nothing when none.

        Deleting what someone already deleted is done, not an error.
        """
        target = self.path(model, stage)
        if not target.is_file():
            return
        if self.api is not None:
            await self.api.delete(read_objects(target))
        target.unlink()

    async def wait_ready(self, model: str, stage: str, timeout: float) -> None:
        """Until each InferenceService of ``model`` at ``stage`` is Ready; ApplyFailed naming it and its conditions.

        KServe sets an InferenceService Ready once its latest revision serves,
        so this also tells a rollout's new version from the old one that still
        answers on the same address.
        """
        assert self.api is not None
        for document in read_objects(self.path(model, stage)):
            if document["kind"] == "InferenceService":
                await self.api.wait_ready(document, timeout)

    async def apply(self, path: Path) -> None:
        """Apply the objects in ``path`` (a file this deployer wrote); ApplyFailed naming the one refused."""
        assert self.api is not None
        await self.api.apply(read_objects(path))
