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
``<folder>/<model>-<stage>.yaml`` and, when given a kubectl command
(``MLOPSHUB_KUBECTL``), runs ``kubectl apply -f`` on the file;
:meth:`ManifestDeployer.delete` runs ``kubectl delete -f`` on it and removes it.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

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
    """``objects`` as one multi-document YAML text (what ``kubectl apply -f`` reads)."""
    import yaml

    return "".join(f"---\n{yaml.safe_dump(dict(o), sort_keys=False)}" for o in objects)


class ManifestDeployer:
    """Writes a release's objects to ``<folder>/<model>-<stage>.yaml``; applies them when ``kubectl`` is given.

    ``kubectl`` is the command as an argument list (e.g. ``["kubectl",
    "--context", "bank"]``); ``apply -f <file>`` is appended. None: write only
    (a reviewer or GitOps applies them).
    """

    def __init__(self, folder: str | Path, kubectl: Sequence[str] | None = None, *, timeout: float = 120):
        self.folder = Path(folder)
        self.kubectl = list(kubectl) if kubectl else None
        self.timeout = timeout

    @classmethod
    def from_env(cls, folder: str | Path, env: Mapping[str, str]) -> ManifestDeployer:
        """A deployer that applies with ``MLOPSHUB_KUBECTL`` (a command line, e.g. ``kubectl --context bank``)."""
        command = shlex.split(env.get("MLOPSHUB_KUBECTL", ""))
        return cls(folder, command or None)

    def path(self, model: str, stage: str) -> Path:
        """The file of ``model``'s objects at ``stage``."""
        return self.folder / f"{model}-{stage}.yaml"

    def deploy(self, release: Any, stage: str, *, storage_uri: str = "") -> Path:
        """Write (and apply) the objects of ``release`` at ``stage``; the file written."""
        data = _as_mapping(release)
        objects = release_objects(data, stage, storage_uri=storage_uri)
        target = self.path(str(data["model_name"]), stage)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".yaml.partial")
        partial.write_text(to_yaml(objects))
        partial.replace(target)
        if self.kubectl and objects:
            self.apply(target)
        return target

    def delete(self, model: str, stage: str) -> None:
        """Delete ``model``'s objects at ``stage`` (``kubectl delete -f``), then their file; nothing when none."""
        target = self.path(model, stage)
        if not target.is_file():
            return
        if self.kubectl and target.read_text().strip():
            # --ignore-not-found: deleting what someone already deleted is done, not an error.
            self._kubectl("delete", "--ignore-not-found", "-f", str(target))
        target.unlink()

    def wait_ready(self, model: str, stage: str, timeout: float) -> None:
        """``kubectl wait --for=condition=Ready`` on the objects of ``model`` at ``stage``; RuntimeError if not.

        KServe sets an InferenceService Ready once its latest revision serves,
        so this also tells a rollout's new version from the old one that still
        answers on the same address.
        """
        assert self.kubectl is not None
        command = [*self.kubectl, "wait", "--for=condition=Ready", f"--timeout={int(timeout)}s", "-f"]
        command.append(str(self.path(model, stage)))
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout + 30, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()[-1500:]}")

    def apply(self, path: Path) -> None:
        """``kubectl apply -f <path>``; :class:`RuntimeError` with kubectl's message when it fails."""
        self._kubectl("apply", "-f", str(path))

    def _kubectl(self, *arguments: str) -> None:
        assert self.kubectl is not None
        command = [*self.kubectl, *arguments]
        done = subprocess.run(command, capture_output=True, text=True, timeout=self.timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()[-1500:]}")
