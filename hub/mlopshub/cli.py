"""``mlopshub``: start, stop and inspect the platform; validate and render the catalog."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import catalog, environment, launcher
from .settings import from_env


def _cmd_up(args: argparse.Namespace) -> int:
    return launcher.up(from_env(), foreground=args.foreground)


def _cmd_down(args: argparse.Namespace) -> int:
    return launcher.down(from_env())


def _cmd_restart(args: argparse.Namespace) -> int:
    return launcher.restart(from_env(), args.parts)


def _cmd_status(args: argparse.Namespace) -> int:
    report = launcher.status(from_env())
    if args.json:
        print(json.dumps(report, indent=2))
    elif not report["running"]:
        print(f"mlopshub is not running (data dir {report['data_dir']}).")
    else:
        print(
            f"mlopshub is running at {report['url']}/ (supervisor pid {report['supervisor_pid']}, "
            f"data dir {report['data_dir']})"
        )
        for name, part in report.get("parts", {}).items():
            health = "healthy" if part["healthy"] else ("not answering" if part["alive"] else "not running")
            restarts = f", restarted {part['restarts']}x" if part["restarts"] else ""
            print(f"  {name + ':':<11} pid {part['pid']}, {health}{restarts}")
        if "error" in report:
            print(f"  {report['error']}")
        else:
            print(f"  services:   {', '.join(report['services']) or '(none)'}")
            print(f"  workspaces: {', '.join(report['workspaces']) or '(none)'}")
    return 0 if report["running"] else 3


def _cmd_profiles_validate(args: argparse.Namespace) -> int:
    folder = Path(args.dir) if args.dir else from_env().catalog_dir
    loaded = catalog.load(folder)
    print(
        f"{folder}: valid ({len(loaded.profiles)} profiles, {len(loaded.teams)} teams, "
        f"{len(loaded.role_groups)} role groups)"
    )
    return 0


def _cmd_profiles_render(args: argparse.Namespace) -> int:
    import asyncio

    import yaml
    from tornado.web import HTTPError

    from . import chart, kubernetes

    loaded = catalog.load(Path(args.dir) if args.dir else from_env().catalog_dir)
    choices = dict(choice.split("=", 1) for choice in args.option)
    defaults = Path(args.chart_defaults) if args.chart_defaults else None
    context = chart.for_render([Path(f) for f in args.values], defaults, args.release, args.namespace)
    try:
        manifests = asyncio.run(kubernetes.render(loaded, args.team, args.profile, args.user, choices, chart=context))
    except HTTPError as error:
        raise ValueError(f"team '{args.team}': {error.log_message}") from None
    if context.unknown:
        print("# Rendered offline; the hub may differ in what these chart settings give:")
        print("".join(f"#   - {item}\n" for item in context.unknown), end="")
    print(yaml.safe_dump_all(manifests, sort_keys=False), end="")
    return 0


def _cmd_helm_generate(args: argparse.Namespace) -> int:
    from . import helm, umbrella
    from .settings import require_checkout

    require_checkout("`mlopshub helm generate` (it writes helm-values/generated/ from profiles/)")
    for path in [*helm.write_generated(), *umbrella.write_chart()]:
        print(f"wrote {path}")
    return 0


def _cmd_helm_check_site(args: argparse.Namespace) -> int:
    from . import umbrella
    from .settings import require_checkout

    require_checkout("`mlopshub helm check-site` (it reads deploy/mlopshub/values.yaml)")
    problems = umbrella.check_site([Path(f) for f in args.values])
    for problem in problems:
        print(f"{', '.join(args.values)}: {problem}", file=sys.stderr)
    if not problems:
        print("the site's values agree: one host, the OIDC client, MLflow's bucket")
    return 1 if problems else 0


def _cmd_images_check(args: argparse.Namespace) -> int:
    from . import imagecheck

    return imagecheck.main(["--fix"] if args.fix else [])


def _cmd_serving_render(args: argparse.Namespace) -> int:
    from .serving import manifests

    if args.release_json:
        # A release as the pipeline API returns it: the objects the pipeline would apply for it at --stage.
        release = json.loads(Path(args.release_json).read_text())
    else:
        release = _release_from_args(args)
    objects = manifests.release_objects(release, args.stage, storage_uri=args.storage_uri, output_root=args.output)
    print(manifests.to_yaml(objects), end="")
    return 0


def _release_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The release ``mlopshub serving render --model ...`` names, in the pipeline API's shape."""
    if not (args.model and args.version and args.team):
        raise ValueError("--model, --version and --team: name the model version to render (or give --release-json)")
    release: dict[str, Any] = {"model_name": args.model, "version": args.version, "team": args.team, "kind": args.kind}
    if args.kind == "online":
        if not args.storage_uri:
            raise ValueError("--storage-uri: an online model is served from its artifacts (s3://...); name them")
        return release
    if not args.input:
        raise ValueError("--input: a batch model scores a DVC-tracked input; name it")
    release["batch"] = {"input": args.input, "rev": args.rev, "schedule": args.schedule, "repo": None}
    return release


#: Exit status of ``mlopshub audit verify`` on a broken chain (1 is "could not check").
AUDIT_BROKEN = 3


def _cmd_audit_verify(args: argparse.Namespace) -> int:
    from .pipeline.audit import verify_file

    database = Path(args.database) if args.database else from_env().pipeline_dir / "pipeline.sqlite"
    report = verify_file(database)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.summary())
        for problem in sorted(report.problems, key=lambda p: p.seq)[1:]:
            print(f"  also entry {problem.seq}: {problem.kind}: {problem.message}")
        for note in report.notes:
            print(f"  note: {note}")
    return 0 if report.intact else AUDIT_BROKEN


def _cmd_backup(args: argparse.Namespace) -> int:
    from .backup import backup

    manifest = backup(from_env(), Path(args.dir), homes=not args.without_homes)
    files = sum(entry["type"] == "file" for entry in manifest["entries"])
    print(
        f"backed up {manifest['data_dir']} into {Path(args.dir).absolute()} in {manifest['seconds']:.1f}s: "
        f"{files} files, {manifest['bytes'] / 1e6:.1f} MB; databases (SQLite online backup): "
        f"{', '.join(manifest['databases']) or '(none)'}"
    )
    if manifest["audit"]:
        print(f"  {manifest['audit']['summary']}")
    print(f"  left out: {'; '.join(manifest['left_out'])}")
    for skipped in manifest["skipped"]:
        print(f"  skipped {skipped['path']}: {skipped['why']}")
    print("  The backup holds the platform's secrets (tokens, keys, passwords): keep it where only root can read it.")
    return 0


def _cmd_restore(args: argparse.Namespace) -> int:
    from .backup import restore

    done = restore(from_env(), Path(args.dir), replace_catalog=args.replace_catalog)
    print(f"restored the backup of {done['backup']['created']} into {done['data_dir']}")
    if done["moved_aside"]:
        print(f"  the data dir it replaced is at {done['moved_aside']}")
    print(f"  {done['catalog']}")
    if done["audit"]:
        print(f"  {done['audit']}")
    if not done["backup"]["homes"]:
        print("  the backup holds no homes (--without-homes): restore them from where you keep them")
    print("  start the platform with `mlopshub up`")
    return 0


def _cmd_environment(args: argparse.Namespace) -> int:
    if args.what == "check":
        drifted = environment.drift()
        for item in drifted:
            print(item)
        if not drifted:
            print(f"every package matches {environment.MANIFEST.name}")
        return 1 if drifted and args.strict else 0
    lists = {"pip": environment.pip_requirements, "debian": environment.debian_packages}
    print("\n".join(lists[args.what]()))
    return 0


def _hub_api(args: argparse.Namespace) -> tuple[str, str]:
    """The hub API to read and a token for it: ``--hub-api`` with ``$JUPYTERHUB_API_TOKEN`` (Kubernetes), else
    the platform running on this machine with its admin service's token (``<data dir>/secrets/admin-token``)."""
    if args.hub_api:
        token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
        if not token:
            raise ValueError(f"--hub-api {args.hub_api}: put a hub token that may read groups in JUPYTERHUB_API_TOKEN")
        return args.hub_api.rstrip("/"), token
    settings = from_env()
    try:
        token = launcher.admin_token(settings)
    except FileNotFoundError:
        raise ValueError(
            f"no admin token in {settings.secrets_dir}: start the platform here (`mlopshub up`), or name a hub "
            "with --hub-api URL and its token in JUPYTERHUB_API_TOKEN"
        ) from None
    return f"{settings.public_url}/hub/api", token


def _cmd_teams_export(args: argparse.Namespace) -> int:
    from . import teams

    loaded = catalog.load(Path(args.dir) if args.dir else from_env().catalog_dir)
    api_url, token = _hub_api(args)
    found = teams.teams_from_groups(teams.fetch_groups(api_url, token), loaded)
    text = teams.export_yaml(found, role_groups=loaded.role_groups, consumers=loaded.consumers, source=api_url)
    if args.output:
        Path(args.output).write_text(text)
        print(f"wrote {len(found)} teams from {api_url} to {args.output}", file=sys.stderr)
    else:
        print(text, end="")
    return 0


def parser() -> argparse.ArgumentParser:
    """The command line, one sub-command per action."""
    top = argparse.ArgumentParser(prog="mlopshub", description=__doc__)
    commands = top.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="start the platform (in the background) and wait until it is healthy")
    up.add_argument(
        "--foreground",
        action="store_true",
        help="run the supervisor in the foreground, its log lines on the terminal; Ctrl-C stops the platform",
    )
    up.set_defaults(func=_cmd_up)
    commands.add_parser("down", help="stop the platform and every workspace").set_defaults(func=_cmd_down)
    restart = commands.add_parser(
        "restart", help="restart parts of the running platform (default: mlflow, pipeline, hub); workspaces stay up"
    )
    restart.add_argument("parts", nargs="*", help="parts to restart: mlflow, models, pipeline, proxy, hub")
    restart.set_defaults(func=_cmd_restart)
    status = commands.add_parser("status", help="say what runs")
    status.add_argument("--json", action="store_true", help="print the report as JSON")
    status.set_defaults(func=_cmd_status)

    profiles = commands.add_parser("profiles", help="work with the catalog of workspace profiles")
    profile_commands = profiles.add_subparsers(dest="profiles_command", required=True)
    validate = profile_commands.add_parser("validate", help="check a catalog folder (default: profiles/)")
    validate.add_argument("dir", nargs="?", help="catalog folder")
    validate.set_defaults(func=_cmd_profiles_validate)
    render = profile_commands.add_parser(
        "render", help="print the Pod and PVC manifests KubeSpawner would create (no cluster needed)"
    )
    render.add_argument("--team", required=True, help="the user's team (a catalog team)")
    render.add_argument("--profile", required=True, help="profile slug")
    render.add_argument("--user", required=True, help="hub user name")
    render.add_argument("--option", action="append", default=[], metavar="NAME=CHOICE", help="a profile option choice")
    render.add_argument("--dir", help="catalog folder (default: profiles/)")
    render.add_argument(
        "--values",
        action="append",
        default=[],
        metavar="FILE",
        help="a values file the chart is installed with, in helm's -f order (default: the hub's own in the hub pod, "
        "else helm-values/jupyterhub.yaml and helm-values/generated/catalog.yaml)",
    )
    render.add_argument(
        "--chart-defaults",
        metavar="FILE",
        help="the chart's values.yaml, under the values files (default: ../shared/peers/z2jh/values.yaml if present)",
    )
    render.add_argument("--release", default="mlopshub", help="the Helm release name (offline only)")
    render.add_argument("--namespace", default="mlopshub", help="the namespace of the hub (offline only)")
    render.set_defaults(func=_cmd_profiles_render)

    teams_cmd = commands.add_parser("teams", help="teams as the hub holds them (group properties)")
    teams_commands = teams_cmd.add_subparsers(dest="teams_command", required=True)
    export = teams_commands.add_parser(
        "export",
        help="write the hub's teams as catalog YAML (a teams.yaml for profiles/, with its role groups and consumers)",
    )
    export.add_argument("--output", metavar="FILE", help="write to FILE (default: standard output)")
    export.add_argument(
        "--hub-api",
        metavar="URL",
        help="the hub's API, such as http://hub:8081/hub/api, with a token in JUPYTERHUB_API_TOKEN (default: the "
        "platform running on this machine, with its admin token)",
    )
    export.add_argument(
        "--dir", help="catalog folder whose profiles, role groups and consumers apply (default: profiles/)"
    )
    export.set_defaults(func=_cmd_teams_export)

    serving = commands.add_parser("serving", help="Kubernetes objects that serve released models")
    serving_commands = serving.add_subparsers(dest="serving_command", required=True)
    serve = serving_commands.add_parser(
        "render",
        help="print what the pipeline applies at --stage: a KServe InferenceService (online), a Job (batch "
        "staging) or a CronJob (batch production)",
    )
    serve.add_argument(
        "--release-json", help="a release as GET /services/pipeline/api/releases/{id} returns it (replaces --model...)"
    )
    serve.add_argument("--model", help="registered model name")
    serve.add_argument("--version", help="model version")
    serve.add_argument("--team", help="the model's team")
    serve.add_argument("--kind", choices=["online", "batch"], default="online")
    serve.add_argument("--stage", choices=["staging", "production"], default="production")
    serve.add_argument("--storage-uri", default="", help="online: where the model's artifacts are (s3://...)")
    serve.add_argument("--input", help="batch: the DVC-tracked input to score")
    serve.add_argument("--rev", default="main", help="batch: the input's git revision")
    serve.add_argument(
        "--output", default="/scores", help="batch: where outputs go, one folder per model and stage below it"
    )
    serve.add_argument("--schedule", default="0 6 * * *", help="batch: cron schedule")
    serve.set_defaults(func=_cmd_serving_render)

    helm_cmd = commands.add_parser("helm", help="Helm values derived from the catalog")
    helm_commands = helm_cmd.add_subparsers(dest="helm_command", required=True)
    helm_commands.add_parser(
        "generate",
        help="write helm-values/generated/ and the umbrella chart's values and templates (deploy/mlopshub/) "
        "from profiles/, hub/mlopshub/image_tags.yaml and helm-values/",
    ).set_defaults(func=_cmd_helm_generate)
    check_site = helm_commands.add_parser(
        "check-site", help="check a site's values file for the umbrella chart before `helm upgrade --install`"
    )
    check_site.add_argument("values", nargs="+", metavar="FILE", help="the site's values file(s), in -f order")
    check_site.set_defaults(func=_cmd_helm_check_site)

    images_cmd = commands.add_parser("images", help="workspace and hub images")
    images_commands = images_cmd.add_subparsers(dest="images_command", required=True)
    images_check = images_commands.add_parser(
        "check", help="check that images, environment.yml, profiles and helm-values agree"
    )
    images_check.add_argument("--fix", action="store_true", help="first rewrite the Dockerfiles' build-arg defaults")
    images_check.set_defaults(func=_cmd_images_check)

    audit = commands.add_parser("audit", help="the release pipeline's audit log")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_commands.add_parser(
        "verify",
        help=f"check the whole hash chain and its head file; exit {AUDIT_BROKEN} naming the first bad entry if broken",
    )
    verify.add_argument("--database", help="the pipeline's SQLite file (default: <data dir>/pipeline/pipeline.sqlite)")
    verify.add_argument("--json", action="store_true", help="print the whole report as JSON")
    verify.set_defaults(func=_cmd_audit_verify)

    backup = commands.add_parser(
        "backup",
        help="copy the platform's data, consistent while it runs, into a new folder (mode 0700: it holds secrets)",
    )
    backup.add_argument("dir", help="a new or empty folder outside the data dir")
    backup.add_argument("--without-homes", action="store_true", help="leave out the users' homes (workspaces' files)")
    backup.set_defaults(func=_cmd_backup)
    restore = commands.add_parser(
        "restore",
        help="check a backup is whole, then bring it back as the data dir of the stopped platform "
        "(the current one is moved aside to <data dir>.before-restore-<time>)",
    )
    restore.add_argument("dir", help="a folder made by `mlopshub backup`")
    restore.add_argument(
        "--replace-catalog",
        action="store_true",
        help="put the backup's catalog in place of a catalog that differs (moved aside); by default a differing "
        "catalog is kept and a missing one restored",
    )
    restore.set_defaults(func=_cmd_restore)

    env = commands.add_parser("environment", help="install lists from environment.yml for one-machine mode")
    env.add_argument(
        "what",
        choices=["pip", "debian", "check"],
        help="pip requirements, the Debian packages for R, or check: list packages that differ from the manifest",
    )
    env.add_argument("--strict", action="store_true", help="check: exit 1 when a package differs")
    env.set_defaults(func=_cmd_environment)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``mlopshub`` command; errors a person can fix print one line and exit 1."""
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (catalog.CatalogError, launcher.LaunchError, ValueError) as error:
        print(f"mlopshub: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
