"""Read one file of a DVC project at a revision and print it as JSON: ``python -m mlopshub.services.pipeline.dvcread``.

Run by :meth:`mlopshub.services.pipeline.projects.ProjectReader.read` as the
publisher's Unix account, never as the pipeline: the project, its DVC files
and its cache are the publisher's, and are read with their rights only.

``--repo=<folder or git URL> --path=<file> [--rev=<revision>]`` prints
``{"csv": "<rows>", "md5": "<DVC hash>" | null, "version": "<hash, else rev, else 'workspace'>"}``;
on failure it exits 1 with one line ``<Type>: <message>`` on stderr.
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mlopshub.services.pipeline.dvcread", description=__doc__)
    parser.add_argument("--repo", required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--rev")
    args = parser.parse_args(argv)
    try:
        answer = read(args.repo, args.path, args.rev)
    except Exception as error:  # one line for the pipeline to show; no traceback with file contents
        message = " ".join(str(error).split())[:400]
        print(f"{type(error).__name__}: {message}", file=sys.stderr)
        raise SystemExit(1) from None
    json.dump(answer, sys.stdout)


if __name__ == "__main__":
    main()
