"""Read one file of a DVC project at a revision and print it as JSON: ``python -m mlopshub.services.pipeline.dvcread``.

Run by :meth:`mlopshub.services.pipeline.projects.ProjectReader.read` as the
publisher's Unix account, never as the pipeline: the project, its DVC files
and its cache are the publisher's, and are read with their rights only.

``--repo=<folder or git URL> --path=<file> [--rev=<revision>]`` prints
``{"csv": "<rows>", "md5": "<DVC hash>" | null, "version": "<hash, else rev, else 'workspace'>"}``;
``--repo=... --rev=<commit> --lineage [--versions=<path> ...]`` prints what DVC records
for each path at that commit (the lineage gate compares it with the run's tags):
``{"commit": "<commit>", "versions": {"<path>": "<DVC hash>" | null}}``.
On failure it exits 1 with one line ``<Type>: <message>`` on stderr.
"""

from __future__ import annotations

import argparse
import io
import json
import sys


def version_of(path: str, repo: str, rev: str | None) -> str | None:
    """The DVC content hash of ``path`` at ``rev``, or None when DVC does not track it."""
    from dvc.api import DVCFileSystem

    info = DVCFileSystem(repo, rev=rev).info(path)
    digest = info.get("md5") or (info.get("dvc_info") or {}).get("md5")
    return str(digest) if digest else None


def read(repo: str, path: str, rev: str | None) -> dict[str, str | None]:
    """The rows of ``path`` and its version (what :func:`main` prints)."""
    import dvc.api

    md5 = version_of(path, repo, rev)
    with dvc.api.open(path, repo=repo, rev=rev, mode="r") as stream:
        text = stream.read()
    import pandas as pd

    pd.read_csv(io.StringIO(text), nrows=1)  # a file that is not CSV is named here, not later in the pipeline
    return {"csv": text, "md5": md5, "version": md5 or rev or "workspace"}


def versions_at(repo: str, commit: str, paths: list[str]) -> dict[str, object]:
    """The DVC hash each of ``paths`` has at ``commit`` (None: not tracked there); RevError for an unknown commit."""
    from dvc.api import DVCFileSystem

    fs = DVCFileSystem(repo, rev=commit)
    fs.ls("/")  # resolves the commit: an unknown one fails here, with or without paths
    versions: dict[str, str | None] = {}
    for path in paths:
        try:
            info = fs.info(path)
        except FileNotFoundError:
            versions[path] = None
            continue
        digest = info.get("md5") or (info.get("dvc_info") or {}).get("md5")
        versions[path] = str(digest) if digest else None
    return {"commit": commit, "versions": versions}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mlopshub.services.pipeline.dvcread", description=__doc__)
    parser.add_argument("--repo", required=True)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--path")
    what.add_argument("--lineage", action="store_true")
    parser.add_argument("--versions", action="append", default=[])
    parser.add_argument("--rev")
    args = parser.parse_args(argv)
    if args.lineage and not args.rev:
        parser.error("--lineage needs --rev (the commit)")
    try:
        answer = (
            versions_at(args.repo, args.rev, args.versions) if args.lineage else read(args.repo, args.path, args.rev)
        )
    except Exception as error:  # one line for the pipeline to show; no traceback with file contents
        message = " ".join(str(error).split())[:400]
        print(f"{type(error).__name__}: {message}", file=sys.stderr)
        raise SystemExit(1) from None
    json.dump(answer, sys.stdout)


if __name__ == "__main__":
    main()
