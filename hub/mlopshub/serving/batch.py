"""Batch scoring: a released model scores a DVC-versioned input; the output records what made it.

``python -m mlopshub.serving.batch --model-uri models:/credit/3 --input data/loans.csv --rev v2 --output out/``
writes ``<input name>-<model>-<input hash>.csv`` (the input's columns and a
``prediction`` column) and a ``.json`` beside it with the model URI, the
input path, revision and DVC hash, the row count and the time. Run on a
schedule by the CronJob from :func:`mlopshub.serving.kserve.batch_cronjob`, or
on demand.
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


def score(model_uri: str, input_path: str, rev: str | None, output_dir: Path, repo: str | None = None) -> Path:
    """Score the input at ``rev`` with ``model_uri``; return the path of the written CSV."""
    import dvc.api
    import mlflow
    import pandas as pd

    digest = input_version(input_path, rev, repo)
    with dvc.api.open(input_path, repo=repo, rev=rev) as handle:
        frame = pd.read_csv(handle)
    model = mlflow.pyfunc.load_model(model_uri)
    scored = frame.copy()
    scored["prediction"] = list(model.predict(frame))
    output_dir.mkdir(parents=True, exist_ok=True)
    model_part = re.sub(r"[^A-Za-z0-9_.-]+", "-", model_uri.split(":", 1)[-1]).strip("-")
    target = output_dir / f"{Path(input_path).stem}-{model_part}-{digest[:8]}.csv"
    scored.to_csv(target, index=False)
    record: dict[str, Any] = {
        "model_uri": model_uri,
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
    args = parser.parse_args(argv)
    print(score(args.model_uri, args.input, args.rev, args.output, args.repo))


if __name__ == "__main__":
    main()
