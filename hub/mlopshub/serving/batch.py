"""Batch scoring: a released model scores a DVC-versioned input; the output records what made it.

``python -m mlopshub.serving.batch --model-uri models:/credit/3 --input data/loans.csv --rev v2 --output out/``
writes ``<input name>-<model>-<input hash>.csv`` (the input's columns and a
``prediction`` column) and a ``.json`` beside it with the model URI, the
input path, revision and DVC hash, the row count and the time. Run on a
schedule by the CronJob from :func:`mlopshub.serving.kserve.batch_cronjob`, or
on demand.

On one machine the pipeline runs it with the model from its local copy of
the version (``--model-uri /path/to/copy --record-uri models:/credit/3``), so
the process needs no MLflow credentials and the record still names the
registered version, and the digest recorded at registration
(``--model-digest``), which the copy is checked against before it is loaded.
The pipeline has the input read as the publisher (the team's model account
the scoring runs as may not read the project) and hands it over as a file
with its DVC hash (``--input-file``, ``--input-md5``).
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path
from typing import Any


def input_version(path: str, rev: str | None, repo: str | None) -> str:
    """The DVC hash of ``path`` at ``rev``: what the output records as the input's version."""
    from dvc.api import DVCFileSystem

    info = DVCFileSystem(repo or ".", rev=rev).info(path)
    digest = info.get("md5") or (info.get("dvc_info") or {}).get("md5")
    if not digest:
        raise ValueError(f"input '{path}' at revision '{rev}' is not versioned by DVC; track it and save a version")
    return str(digest)


def read_input(input_path: str, rev: str | None, repo: str | None) -> tuple[str, Any]:
    """The input's DVC hash at ``rev`` and its rows (a pandas DataFrame)."""
    import dvc.api
    import pandas as pd

    digest = input_version(input_path, rev, repo)
    with dvc.api.open(input_path, repo=repo, rev=rev) as handle:
        return digest, pd.read_csv(handle)


def score(
    model_uri: str,
    input_path: str,
    rev: str | None,
    output_dir: Path,
    repo: str | None = None,
    *,
    recorded_uri: str | None = None,
    input_file: str | Path | None = None,
    input_md5: str | None = None,
    model_digest: str | None = None,
) -> Path:
    """Score the input at ``rev`` with ``model_uri``; return the path of the written CSV.

    ``recorded_uri`` is the model URI the output is named after and its record
    holds (default ``model_uri``): ``models:/<name>/<version>`` when
    ``model_uri`` is a local copy of that version.
    """
    recorded_uri = recorded_uri or model_uri
    if model_digest:
        from .integrity import verify_tree

        verify_tree(model_uri, model_digest)
    import mlflow
    import pandas as pd

    if input_file is not None and input_md5:
        digest, frame = input_md5, pd.read_csv(input_file)
    else:
        digest, frame = read_input(input_path, rev, repo)
    model = mlflow.pyfunc.load_model(model_uri)
    scored = frame.copy()
    scored["prediction"] = list(model.predict(frame))
    output_dir.mkdir(parents=True, exist_ok=True)
    model_part = re.sub(r"[^A-Za-z0-9_.-]+", "-", recorded_uri.split(":", 1)[-1]).strip("-")
    target = output_dir / f"{Path(input_path).stem}-{model_part}-{digest[:8]}.csv"
    scored.to_csv(target, index=False)
    record: dict[str, Any] = {
        "model_uri": recorded_uri,
        "repo": repo,
        "input": {"path": input_path, "rev": rev, "md5": digest, "rows": len(frame)},
        "output": target.name,
        "scored_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    target.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    return target


def main(argv: list[str] | None = None) -> None:
    """Command line for the CronJob and for on-demand runs."""
    parser = argparse.ArgumentParser(prog="python -m mlopshub.serving.batch", description=__doc__)
    parser.add_argument("--model-uri", required=True, help="e.g. models:/credit-default/3 or models:/name@production")
    parser.add_argument("--input", required=True, help="DVC-tracked CSV, relative to the project")
    parser.add_argument("--rev", help="git revision of the input's version (default: the workspace copy)")
    parser.add_argument("--repo", help="the DVC project (folder or git URL); default: the current folder")
    parser.add_argument("--output", required=True, type=Path, help="folder for the scored CSV and its record")
    parser.add_argument(
        "--record-uri", help="the model URI to record (default: --model-uri); e.g. models:/credit/3 for a local copy"
    )
    parser.add_argument("--input-file", help="the input's rows, already read at --rev (then --input-md5 is needed)")
    parser.add_argument("--input-md5", help="the DVC hash of --input at --rev, recorded with the output")
    parser.add_argument("--model-digest", help="the digest the local model folder must have (sha256:<hex>)")
    args = parser.parse_args(argv)
    if args.input_file and not args.input_md5:
        parser.error("--input-file needs --input-md5 (the version the output records)")
    scored = score(
        args.model_uri,
        args.input,
        args.rev,
        args.output,
        args.repo,
        recorded_uri=args.record_uri,
        input_file=args.input_file,
        input_md5=args.input_md5,
        model_digest=args.model_digest,
    )
    print(scored)


if __name__ == "__main__":
    main()
