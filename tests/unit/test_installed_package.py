"""The hub image is self-contained: the package installed as images/hub/Dockerfile installs it works without a checkout.

The test builds a build context from exactly what the Dockerfile COPYs, installs it with pip (a wheel built from
that context, ``--no-deps``: the dependencies are this virtualenv's, as the base image brings them), then runs a
probe in a subprocess whose working directory is another temporary folder, whose ``sys.path`` holds the installed
copy and the dependencies but not the checkout, and whose audit hook records every ``open``, ``os.listdir`` and
``os.scandir`` of a path inside the checkout (the virtualenv aside: it stands for the image's own Python). The
catalog reaches the probe as it reaches the hub pod: the ``mlopshub-catalog`` ConfigMap's keys as files, in
kubelet's layout (``..data`` symlinks), at the folder ``MLOPSHUB_CATALOG`` of helm-values/jupyterhub.yaml names;
the other plain ``hub.extraEnv`` values are set as the chart sets them. ``mlopshub profiles render`` finds the
chart values as it does outside the hub pod, in its working directory (copies of helm-values/ files).

The probe: ``mlopshub.__file__`` lies outside the checkout; ``mlopshub.configure(c)`` in Kubernetes mode; every
team's spawn form and ``profile_list``, as the hub builds them (``Spawner.get_options_form`` of the configured
``CatalogKubeSpawner``), with the image references of the package's own tags file; ``mlopshub profiles render``
for every team; the files the image's other processes load; and, without a checkout, the developer's commands
and a hub without ``MLOPSHUB_CATALOG`` saying what they miss.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlopshub import images
from mlopshub.imagecheck import dockerfile_instructions

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "images" / "hub" / "Dockerfile"
HUB_VALUES = REPO / "helm-values" / "jupyterhub.yaml"
GENERATED = REPO / "helm-values" / "generated"
CATALOG_CONFIGMAP = "mlopshub-catalog"
#: Modules the hub image's containers run with ``python -m`` (helm-values/platform/, the hub's services).
ENTRY_MODULES = [
    "mlopshub.services.pipeline",
    "mlopshub.services.membership",
    "mlopshub.services.mlflow_server",
    "mlopshub.services.mlflow_auth_ini",
]

#: Runs in the subprocess: argv[1] is the checkout, argv[2] a JSON file with what to expect; prints JSON.
PROBE = r'''
import asyncio
import io
import json
import os
import sys
from contextlib import redirect_stdout
from pathlib import Path

checkout = os.path.realpath(sys.argv[1])
expected = json.loads(Path(sys.argv[2]).read_text())
allowed = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}


def inside(path):
    real = os.path.realpath(path)
    if any(real == a or real.startswith(a + os.sep) for a in allowed):
        return False
    return real == checkout or real.startswith(checkout + os.sep)


# The hub image has no checkout on its path: drop what this virtualenv's editable installs add.
sys.path[:] = [p for p in sys.path if not (p and inside(p))]
violations = []


def audit(event, args):
    if event not in ("open", "os.listdir", "os.scandir") or not args:
        return
    path = args[0]
    if isinstance(path, int) or path is None:
        return
    path = os.fsdecode(path)
    if inside(path):
        violations.append(f"{event} {path}")
        raise FileNotFoundError(2, "outside the hub image (the checkout)", path)


sys.addaudithook(audit)


async def spawn_forms(config, catalog):
    from jupyterhub.objects import Hub

    from mlopshub import access
    from mlopshub.kubernetes import CatalogKubeSpawner
    from mlopshub.kubernetes import _RenderGroup as Group  # the hub user record render uses
    from mlopshub.kubernetes import _RenderUser as User

    seeded = access.seed_groups(catalog, {})
    forms = {}
    for team in catalog.teams:
        user = User(f"probe-{team}", [Group(team, seeded[team]["properties"])])
        spawner = CatalogKubeSpawner(config=config, user=user, hub=Hub(ip="hub", port=8081), namespace="mlopshub")
        form = await spawner.get_options_form()
        profiles = spawner.profile_list(spawner)
        forms[team] = {
            "form_has": {p["slug"]: p["display_name"] in form for p in profiles},
            "images": {p["slug"]: p["kubespawner_override"].get("image") for p in profiles},
        }
    return forms


result = {"violations": violations, "errors": {}}


def stage(name, run):
    """Run one step; a failure is reported under its name (with the checkout reads that led to it)."""
    import traceback

    try:
        run()
    except BaseException as error:
        result["errors"][name] = "".join(traceback.format_exception(error))


def configure():
    import mlopshub
    from traitlets.config import Config

    result["package"] = os.path.realpath(mlopshub.__file__)
    config = Config()
    mlopshub.configure(config)
    result["spawner_class"] = config.JupyterHub.spawner_class
    result["config"] = config


def forms():
    config = result.pop("config")
    result["forms"] = asyncio.run(spawn_forms(config, config.CatalogKubeSpawner.catalog))


def render():
    from mlopshub import cli

    renders = result.setdefault("renders", {})
    for team, slug in expected["render"].items():
        out = io.StringIO()
        with redirect_stdout(out):
            code = cli.main(["profiles", "render", "--team", team, "--profile", slug, "--user", f"probe-{team}"])
        renders[team] = {"code": code, "yaml": out.getvalue()}


def services():
    """What the image's other processes load: the pipeline's OpenAPI document, MLflow's log config, the Teams page's
    files and the hub's page template, the modules the Deployments run with ``python -m``."""
    import importlib
    import importlib.util

    from mlopshub.services import membership, mlflow_server
    from mlopshub.services.pipeline import app

    from mlopshub.services.pipeline import teams_page

    configure_module = importlib.import_module("mlopshub.configure")  # (the package exports a function of that name)

    sizes = {"openapi": len(app.OPENAPI.read_bytes()), "log config": len(mlflow_server.LOG_CONFIG.read_bytes())}
    # The hub's page template (Teams link) and the Teams page's script and style.
    sizes["hub page template"] = len((configure_module.TEMPLATES / "page.html").read_bytes())
    for name in ("teams.js", "teams.css"):
        sizes[name] = len((teams_page.STATIC / name).read_bytes())
    for module in expected["entry_modules"]:
        spec = importlib.util.find_spec(module)
        sizes[module] = len(Path(spec.origin).read_bytes()) if spec and spec.origin else 0
    assert membership.__file__
    result["services"] = sizes


def without_checkout():
    """The developer's commands, and a hub without its catalog, each say what is missing."""
    from contextlib import redirect_stderr

    from mlopshub import cli, settings

    said = {}
    for argv in (["images", "check"], ["environment", "pip"], ["helm", "generate"]):
        err = io.StringIO()
        with redirect_stderr(err), redirect_stdout(io.StringIO()):
            code = cli.main(argv)
        said[" ".join(argv)] = {"code": code, "stderr": err.getvalue()}
    try:
        settings.from_env({"MLOPSHUB_MODE": "kubernetes"})
    except ValueError as error:
        said["no catalog"] = {"code": 1, "stderr": str(error)}
    else:
        said["no catalog"] = {"code": 0, "stderr": ""}
    result["without checkout"] = said


def every_module():
    """Import every module of the installed package, as the hub image holds it (issue 16): none may need the
    checkout, an undeclared package (tests/unit/test_declared_imports.py checks the declarations) or a file the
    wheel does not ship."""
    import importlib
    import pkgutil

    import mlopshub

    failed = {}
    found = pkgutil.walk_packages(mlopshub.__path__, "mlopshub.")
    names = sorted(m.name for m in found if not m.name.endswith(".__main__"))  # those run their service
    for name in names:
        try:
            importlib.import_module(name)
        except BaseException as error:  # noqa: BLE001 - reported by name
            failed[name] = f"{type(error).__name__}: {error}"
    result["modules"] = {"imported": len(names) - len(failed), "failed": failed}


stage("configure", configure)
stage("every module", every_module)
stage("without checkout", without_checkout)
stage("services", services)
if "configure" not in result["errors"]:
    stage("spawn forms", forms)
result.pop("config", None)
stage("profiles render", render)
print("PROBE-RESULT " + json.dumps(result))
'''


def install_source(dockerfile: Path) -> tuple[str, list[tuple[list[str], str]]]:
    """The folder the Dockerfile's ``pip install`` installs from, and its ``COPY`` instructions (sources, dest)."""
    copies, source = [], ""
    for keyword, arguments in dockerfile_instructions(dockerfile.read_text()):
        words = shlex.split(arguments)
        if keyword == "COPY":
            words = [w for w in words if not w.startswith("--")]
            copies.append((words[:-1], words[-1]))
        elif keyword == "RUN" and "pip" in words and "install" in words:
            targets = [w for w in words[words.index("install") + 1 :] if w.startswith("/")]
            source = targets[0].split("[")[0] if targets else ""
    assert source, f"{dockerfile}: no `pip install /<folder>` found"
    return source, copies


def build_context(tmp: Path) -> Path:
    """What the Dockerfile COPYs into the folder it installs from, laid out as in the image."""
    source, copies = install_source(DOCKERFILE)
    context = tmp / "context"
    context.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", "*.egg-info")
    for sources, dest in copies:
        if not dest.rstrip("/").startswith(source):
            continue
        target = context / dest.rstrip("/").removeprefix(source).lstrip("/")
        for name in sources:
            path = REPO / name
            if path.is_dir():  # Docker copies a folder's contents into dest
                shutil.copytree(path, target, ignore=ignore, dirs_exist_ok=True)
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target / path.name)
    return context


def mount_configmap(name: str, mount: Path) -> None:
    """The ConfigMap ``name`` of helm-values/generated/ as kubelet mounts it: ``..data`` -> a dated folder."""
    for path in sorted(GENERATED.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if (document or {}).get("kind") == "ConfigMap" and document["metadata"]["name"] == name:
                data = document["data"]
                break
        else:
            continue
        break
    else:
        raise AssertionError(f"no ConfigMap {name} in {GENERATED}")
    dated = mount / "..2026_12_02_09_00_00.000000001"
    dated.mkdir(parents=True)
    for key, text in data.items():
        (dated / key).write_text(text)
    (mount / "..data").symlink_to(dated.name)
    for key in data:
        (mount / key).symlink_to(Path("..data") / key)


def hub_environment() -> tuple[dict[str, str], str]:
    """The plain ``hub.extraEnv`` values of helm-values/jupyterhub.yaml, and where the catalog ConfigMap is mounted."""
    values = yaml.safe_load(HUB_VALUES.read_text())
    env = {k: v for k, v in values["hub"]["extraEnv"].items() if isinstance(v, str)}
    generated = yaml.safe_load((GENERATED / "catalog.yaml").read_text())["hub"]
    volumes = generated["extraVolumes"]
    volume = next(v["name"] for v in volumes if v.get("configMap", {}).get("name") == CATALOG_CONFIGMAP)
    mount = next(m["mountPath"] for m in generated["extraVolumeMounts"] if m["name"] == volume)
    return env, mount


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("hub-image")
    context = build_context(tmp)
    site = tmp / "site-packages"
    # The image's pip builds in an isolated environment from the index; offline, this virtualenv's setuptools
    # builds the same wheel (pyproject.toml's test extra keeps it new enough).
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--no-cache-dir",
            "--no-compile",
            "--disable-pip-version-check",
            "--target",
            str(site),
            str(context),
        ],
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"pip could not build and install the hub image's package:\n{done.stderr[-3000:]}"
    return site


@pytest.fixture(scope="module")
def probe(installed: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from mlopshub import catalog as catalog_module

    tmp = tmp_path_factory.mktemp("hub-pod")
    env_values, mount_path = hub_environment()
    assert env_values.get("MLOPSHUB_CATALOG") == mount_path, "the hub reads the catalog where the ConfigMap is mounted"
    mount = tmp / "etc-mlopshub-profiles"
    mount_configmap(CATALOG_CONFIGMAP, mount)
    cat = catalog_module.load(mount)
    kubeconfig = tmp / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: probe\n"
        "clusters: [{name: probe, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "contexts: [{name: probe, context: {cluster: probe, user: probe, namespace: mlopshub}}]\n"
        "users: [{name: probe, user: {token: probe}}]\n"
    )
    expected = {
        "render": {team: cat.teams[team].profiles[0] for team in cat.teams},
        "entry_modules": ENTRY_MODULES,
    }
    (tmp / "expected.json").write_text(json.dumps(expected))
    (tmp / "probe.py").write_text(PROBE)
    cwd = tmp / "elsewhere"
    # `mlopshub profiles render` outside the hub pod reads the chart values from the working directory: copies.
    for values_file in (HUB_VALUES, GENERATED / "catalog.yaml"):
        copy = cwd / values_file.relative_to(REPO)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(values_file, copy)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(installed),
        "PYTHONDONTWRITEBYTECODE": "1",
        "KUBECONFIG": str(kubeconfig),
        "MLOPSHUB_RENDER_KUBECONFIG": str(kubeconfig),
        **env_values,
        "MLOPSHUB_CATALOG": str(mount),
    }
    done = subprocess.run(
        [sys.executable, str(tmp / "probe.py"), str(REPO), str(tmp / "expected.json")],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("PROBE-RESULT ")]
    assert lines, f"the probe printed no result (exit {done.returncode}):\n{done.stdout}\n{done.stderr}"
    result = json.loads(lines[-1].removeprefix("PROBE-RESULT "))
    result["catalog"] = cat
    return result


def test_the_probe_ran_without_reading_the_checkout(probe: dict[str, Any]) -> None:
    assert probe["violations"] == [], "the installed package read the checkout:\n" + "\n".join(probe["violations"])


def test_every_module_of_the_installed_package_imports(probe: dict[str, Any]) -> None:
    assert "every module" not in probe["errors"], probe["errors"].get("every module")
    assert probe["modules"]["failed"] == {}
    assert probe["modules"]["imported"] >= 60, probe["modules"]  # every module: a miss in the walk shows here


def test_the_hub_imports_the_installed_copy(probe: dict[str, Any]) -> None:
    package = Path(probe["package"])
    assert REPO not in package.parents, f"mlopshub was imported from the checkout: {package}"


def test_kubernetes_configuration_applies(probe: dict[str, Any]) -> None:
    assert "configure" not in probe["errors"], probe["errors"]["configure"]
    assert probe["spawner_class"] == "mlopshub.kubernetes.CatalogKubeSpawner"


def test_every_team_gets_its_spawn_form_with_the_released_images(probe: dict[str, Any]) -> None:
    assert not probe["errors"].get("spawn forms"), probe["errors"].get("spawn forms")
    assert "forms" in probe, "the spawn forms were not built: mlopshub.configure failed"
    cat = probe["catalog"]
    refs = images.all_refs()
    assert set(probe["forms"]) == set(cat.teams)
    for team, form in probe["forms"].items():
        assert form["images"], f"team {team}: an empty spawn form"
        for slug, shown in form["form_has"].items():
            assert shown, f"team {team}: profile {slug} is missing from the spawn form"
        for slug, image in form["images"].items():
            assert image == refs[cat.profiles[slug].image], f"team {team}, profile {slug}: image {image}"


def test_profiles_render_works_in_the_hub_pod(probe: dict[str, Any]) -> None:
    assert "profiles render" not in probe["errors"], probe["errors"]["profiles render"]
    cat = probe["catalog"]
    refs = images.all_refs()
    for team, rendered in probe["renders"].items():
        assert rendered["code"] == 0, f"team {team}: mlopshub profiles render exited {rendered['code']}"
        pod = next(d for d in yaml.safe_load_all(rendered["yaml"]) if d["kind"] == "Pod")
        slug = cat.teams[team].profiles[0]
        assert pod["spec"]["containers"][0]["image"] == refs[cat.profiles[slug].image]


def test_the_images_other_processes_find_their_files(probe: dict[str, Any]) -> None:
    assert "services" not in probe["errors"], probe["errors"]["services"]
    empty = [name for name, size in probe["services"].items() if not size]
    assert not empty, f"not in the installed package: {empty}"


def test_what_needs_a_checkout_says_so(probe: dict[str, Any]) -> None:
    assert "without checkout" not in probe["errors"], probe["errors"]["without checkout"]
    said = probe["without checkout"]
    for command in ("images check", "environment pip", "helm generate"):
        assert said[command]["code"] == 1, said[command]
        assert "needs a checkout of the mlopshub repository" in said[command]["stderr"], said[command]
    assert said["no catalog"]["code"] == 1
    assert "MLOPSHUB_CATALOG: not set" in said["no catalog"]["stderr"]
