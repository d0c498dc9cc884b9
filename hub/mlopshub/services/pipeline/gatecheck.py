"""The gates that run model code, in a process of their own: ``python -m mlopshub.services.pipeline.gatecheck``.

On one machine the process is a child forked from the team's zygote
(``Zygote.call(GATES, request_file)``: MLflow and scikit-learn already
imported, so the gates cost no cold start); without a zygote a fresh
``python -m`` process (:func:`run_isolated`).

Loading a model runs its author's code (unpickling), and so does scoring the
hold-out set. The pipeline therefore prepares everything that needs its own
rights (the run's tags from MLflow, the hold-out set from DVC, whether the
data is in the team's remote) and hands it to this process on stdin, as
JSON; this process loads the model from its local copy, runs
:func:`mlopshub.pipeline.gates.run_gates` and prints the results as one JSON
line. The pipeline starts it with the environment and, as root, the Unix
account of the model's team (:mod:`mlopshub.serving.sandbox`): the model
sees neither the pipeline's MLflow password nor its hub token, nor another
team's files.

In Kubernetes the process is a Job of the team's
(:class:`~mlopshub.services.pipeline.placement.ClusterPlacement`): the
request is a mounted file (``--request-file``) and names the version's files
in the object store (``model_uri``, fetched with the team's credentials into
a temporary folder) instead of a local copy (``model_path``).

Request (``model_digest``, optional, is checked before the model is loaded):
``{"model_path" | "model_uri", "model_digest", "tags", "thresholds",
"holdout": {"csv", "target", "path", "version"} | null, "holdout_error": "<Type>: <message>" | null,
"pushed": {"<path>": true | false | "<Type>: <message>"} | null,
"recorded": {"commit", "versions": {"<path>": "<DVC hash>" | null}} | "<Type>: <message>" | null}``.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from mlopshub.pipeline.gates import GateResult, HoldOut, _as_array, model_scores, run_gates
from mlopshub.serving.integrity import verify_tree
from mlopshub.serving.sandbox import RunAs, model_environment, popen_options

#: What a zygote's child runs for the gates.
GATES = "mlopshub.services.pipeline.gatecheck:check_json"
#: Seconds the gates may take (loading and scoring a large model on a large hold-out set).
TIMEOUT = 900.0


class GateCheckFailed(RuntimeError):
    """The gate process did not answer (crashed, killed, timed out): names why and the end of its output."""


def _raised(text: str) -> Exception:
    """An exception whose ``Type: message`` reads as the one the pipeline caught (the gates show that text)."""
    name, _, message = text.partition(": ")
    return type(name if name.isidentifier() else "Error", (Exception,), {})(message)


def check(request: Mapping[str, Any]) -> list[GateResult]:
    """Run the gates for ``request`` in this process (what the subprocess does)."""
    if request.get("model_path"):
        return _check_copy(request, Path(request["model_path"]))
    with tempfile.TemporaryDirectory(prefix="gates-") as folder:
        return _check_copy(request, fetch_model(str(request["model_uri"]), Path(folder)))


def fetch_model(uri: str, folder: Path) -> Path:
    """Download the version's files at ``uri`` into ``folder``; the folder holding its ``MLmodel``."""
    import mlflow

    mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(folder))
    found = min(folder.rglob("MLmodel"), key=lambda p: len(p.parts), default=None)
    if found is None:
        raise FileNotFoundError(f"{uri} has no MLmodel file: not an MLflow model's files")
    return found.parent


def _check_copy(request: Mapping[str, Any], path: Path) -> list[GateResult]:
    import mlflow
    import pandas as pd

    if request.get("model_digest"):
        # The copy the gates judge is the one registered: checked before any of its code is loaded.
        verify_tree(path, request["model_digest"])
    spec = request.get("holdout")
    holdout_error = request.get("holdout_error")

    def holdout() -> HoldOut:
        if holdout_error:
            raise _raised(holdout_error)
        frame = pd.read_csv(io.StringIO(spec["csv"]))
        return HoldOut(frame=frame, target=spec["target"], path=spec["path"], version=spec["version"])

    pushed_map = request.get("pushed")

    def pushed(data_path: str, digest: str) -> bool:
        answer = pushed_map.get(data_path, False)
        if isinstance(answer, str):
            raise _raised(answer)
        return bool(answer)

    recorded_answer = request.get("recorded")

    def recorded(commit: str) -> Mapping[str, str | None]:
        if isinstance(recorded_answer, str):
            raise _raised(recorded_answer)
        if recorded_answer.get("commit") != commit:
            raise ValueError(f"the project was read at {recorded_answer.get('commit')!r}, not at {commit!r}")
        return recorded_answer.get("versions") or {}

    answered: dict[str, Any] = {}

    def predict(model: Any, features: pd.DataFrame) -> Any:
        # The model's own answers on the hold-out set, as its endpoint gives them: monitoring's prediction baseline.
        try:
            answered["predictions"] = model.predict(features)
        except Exception:  # the metrics gate scores below and reports what is wrong
            pass
        return model_scores(model, features)

    results = run_gates(
        load=lambda: mlflow.pyfunc.load_model(str(path)),
        model_info=lambda: mlflow.models.Model.load(str(path / "MLmodel")),
        tags=request.get("tags") or {},
        thresholds=request.get("thresholds") or {},
        holdout=holdout if (spec or holdout_error) else None,
        pushed=pushed if pushed_map is not None else None,
        recorded=recorded if recorded_answer is not None else None,
        predict=predict,
    )
    if "predictions" in answered:
        sample = prediction_sample(answered["predictions"])
        results = [
            replace(result, details={**result.details, PREDICTIONS: sample}) if result.name == "metrics" else result
            for result in results
        ]
    return results


#: Where the metrics gate's result carries the model's hold-out predictions (taken out by the pipeline).
PREDICTIONS = "holdout_predictions"
#: Hold-out predictions handed back at most.
MAX_PREDICTIONS = 5000


def take_predictions(results: list[GateResult]) -> tuple[list[GateResult], list[Any] | None]:
    """``results`` without the hold-out predictions the metrics gate's details carry, and those predictions."""
    found = None
    kept = []
    for result in results:
        if PREDICTIONS in result.details:
            found = result.details[PREDICTIONS]
            result = replace(result, details={k: v for k, v in result.details.items() if k != PREDICTIONS})
        kept.append(result)
    return kept, found if isinstance(found, list) else None


def prediction_sample(predictions: Any) -> list[Any] | None:
    """Up to :data:`MAX_PREDICTIONS` of one-column predictions as plain JSON values (NaN as null); None otherwise."""
    values = _as_array(predictions)
    if values.ndim != 1:
        return None
    out: list[Any] = []
    for value in values[:MAX_PREDICTIONS].tolist():
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        elif not isinstance(value, int | float | str | bool | None):
            value = str(value)
        out.append(value)
    return out


def check_json(request: Mapping[str, Any]) -> list[dict[str, Any]]:
    """:func:`check` with plain-data results (what a zygote's child returns: ``Zygote.call``)."""
    return [result.to_dict() for result in check(request)]


def run_isolated(request: Mapping[str, Any], run_as: RunAs | None, timeout: float = TIMEOUT) -> list[GateResult]:
    """Run the gates for ``request`` in a separate process, as ``run_as``; :class:`GateCheckFailed` if it fails."""
    command = [sys.executable, "-m", "mlopshub.services.pipeline.gatecheck"]
    try:
        finished = subprocess.run(
            command,
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=model_environment(run_as),
            cwd=run_as.home if run_as else None,
            **popen_options(run_as),
        )
    except subprocess.TimeoutExpired:
        raise GateCheckFailed(f"the gates did not finish within {timeout:.0f} s") from None
    lines = finished.stdout.strip().splitlines()
    if finished.returncode != 0 or not lines:
        tail = "\n".join((finished.stderr or finished.stdout).strip().splitlines()[-8:])
        raise GateCheckFailed(f"the gate process exited with code {finished.returncode}: {tail}")
    return [GateResult(**result) for result in json.loads(lines[-1])]


def main(argv: list[str] | None = None) -> None:
    """Read the request (stdin, or ``--request-file``), print the results as the last line of stdout."""
    parser = argparse.ArgumentParser(prog="python -m mlopshub.services.pipeline.gatecheck", description=__doc__)
    parser.add_argument("--request-file", type=Path, help="the request as a JSON file (default: read stdin)")
    arguments = parser.parse_args(argv)
    if arguments.request_file is not None:
        request = json.loads(arguments.request_file.read_text())
    else:
        request = json.loads(sys.stdin.read())
    results = check(request)
    print(json.dumps([result.to_dict() for result in results]))


if __name__ == "__main__":
    main()
