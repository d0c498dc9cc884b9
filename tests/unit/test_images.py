"""Workspace images: built from the one manifest, tagged from image_tags.yaml, named by the catalog and Helm.

Pure: no Docker. Negative cases edit a copy of the repository's files in tmp_path.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from mlopshub import imagecheck, images

REPO = Path(__file__).resolve().parents[2]
TAGS = images.load(images.TAGS_FILE)
PROFILES = yaml.safe_load((REPO / "profiles" / "profiles.yaml").read_text())["profiles"]
#: The images a workspace profile starts (the hub image is not one).
WORKSPACE_KEYS = sorted({profile["image"] for profile in PROFILES})
R_KEYS = sorted({profile["image"] for profile in PROFILES if "ir" in profile["kernels"]})


def workspace_dockerfile(key: str) -> Path:
    return REPO / TAGS["images"][key]["dockerfile"]


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    """The files consistency_problems reads, copied so that a test may break them."""
    for name in ("images", "profiles", "helm-values"):
        shutil.copytree(REPO / name, tmp_path / name)
    shutil.copy(REPO / "environment.yml", tmp_path / "environment.yml")
    (tmp_path / images.TAGS_IN_CHECKOUT).parent.mkdir(parents=True)
    shutil.copy(images.TAGS_FILE, tmp_path / images.TAGS_IN_CHECKOUT)
    return tmp_path


def load_workspace_manifest() -> ModuleType:
    """images/workspace_manifest.py (a build script, not a package), loaded without writing bytecode beside it."""
    path = REPO / "images" / "workspace_manifest.py"
    module = ModuleType("workspace_manifest")
    module.__file__ = str(path)
    exec(compile(path.read_text(), str(path), "exec"), module.__dict__)
    return module


# --- the repository as it is ------------------------------------------------------


def test_the_repository_is_consistent():
    assert imagecheck.consistency_problems(REPO) == []


@pytest.mark.parametrize("key", list(TAGS["images"]))
def test_every_image_key_has_its_dockerfile(key):
    assert (REPO / TAGS["images"][key]["dockerfile"]).is_file(), (
        f"hub/mlopshub/image_tags.yaml names a missing Dockerfile for {key}"
    )


@pytest.mark.parametrize("key", WORKSPACE_KEYS)
def test_every_workspace_image_installs_environment_yml_and_ends_as_a_non_root_user(key):
    dockerfile = workspace_dockerfile(key)
    assert imagecheck.copies_manifest(dockerfile), f"{dockerfile.name} does not COPY environment.yml"
    user = imagecheck.final_user(dockerfile)
    assert user is not None and user.split(":")[0] not in ("root", "0"), f"final USER is {user!r}"


@pytest.mark.parametrize("key", WORKSPACE_KEYS)
def test_every_workspace_image_records_its_tag_and_manifest_in_labels(key):
    labels = imagecheck.dockerfile_labels(workspace_dockerfile(key))
    assert labels[imagecheck.VERSION_LABEL] == TAGS["tag"]
    assert labels[imagecheck.ENVIRONMENT_LABEL] == imagecheck.manifest_sha256(REPO / "environment.yml")


@pytest.mark.parametrize("key", WORKSPACE_KEYS)
def test_only_images_with_an_r_kernel_install_the_r_part_of_the_manifest(key):
    with_r = imagecheck.dockerfile_args(workspace_dockerfile(key))["WITH_R"]
    assert with_r == ("true" if key in R_KEYS else "false")


def test_all_workspace_images_share_one_base_image():
    bases = {
        arguments.split()[0]
        for key in WORKSPACE_KEYS
        for keyword, arguments in imagecheck.dockerfile_instructions(workspace_dockerfile(key).read_text())
        if keyword == "FROM"
    }
    assert len(bases) == 1, f"workspace images drift apart: {sorted(bases)}"


def test_gpu_images_and_only_they_install_the_gpu_extras():
    for key in WORKSPACE_KEYS:
        installs = "gpu-extras.txt" in workspace_dockerfile(key).read_text()
        assert installs == key.endswith("-gpu"), key


def test_gpu_extras_are_pinned():
    lines = [line.strip() for line in (REPO / "images" / "gpu-extras.txt").read_text().splitlines()]
    requirements = [line for line in lines if line and not line.startswith(("#", "-"))]
    assert requirements, "images/gpu-extras.txt installs nothing"
    assert all("==" in line for line in requirements), requirements


# --- negative cases: each disagreement is one line naming the place ---------------


def test_a_tag_default_that_differs_from_tags_yaml_is_reported_naming_the_dockerfile(repo_copy):
    dockerfile = repo_copy / "images" / "r-cpu" / "Dockerfile"
    dockerfile.write_text(
        dockerfile.read_text().replace(f"ARG MLOPSHUB_TAG={TAGS['tag']}", "ARG MLOPSHUB_TAG=2020.1.1")
    )
    problems = imagecheck.consistency_problems(repo_copy)
    assert len(problems) == 1, problems
    assert "images/r-cpu/Dockerfile" in problems[0]
    assert "2020.1.1" in problems[0] and TAGS["tag"] in problems[0]


def test_an_edited_manifest_is_reported_in_every_workspace_dockerfile(repo_copy):
    manifest = repo_copy / "environment.yml"
    manifest.write_text(manifest.read_text() + "# an edit\n")
    problems = imagecheck.consistency_problems(repo_copy)
    assert len(problems) == len(WORKSPACE_KEYS), problems
    assert all("MLOPSHUB_ENVIRONMENT_SHA256" in problem for problem in problems)
    assert imagecheck.manifest_sha256(manifest) in problems[0]


def test_a_version_label_not_made_from_the_build_argument_is_reported(repo_copy):
    dockerfile = repo_copy / "images" / "python-cpu" / "Dockerfile"
    text = dockerfile.read_text().replace('image.version="${MLOPSHUB_TAG}"', 'image.version="1.0"')
    dockerfile.write_text(text)
    (problem,) = imagecheck.consistency_problems(repo_copy)
    assert "images/python-cpu/Dockerfile" in problem and imagecheck.VERSION_LABEL in problem


def test_a_profile_with_an_image_key_missing_from_tags_yaml_is_reported_naming_the_profile(repo_copy):
    path = repo_copy / "profiles" / "profiles.yaml"
    data = yaml.safe_load(path.read_text())
    data["profiles"][0]["image"] = "julia"
    path.write_text(yaml.safe_dump(data))
    problems = imagecheck.consistency_problems(repo_copy)
    slug = data["profiles"][0]["slug"]
    named = [p for p in problems if f"profile {slug!r}" in p and "'julia'" in p and "hub/mlopshub/image_tags.yaml" in p]
    assert named, problems


def test_a_profile_with_an_r_kernel_on_an_image_without_r_is_reported(repo_copy):
    dockerfile = repo_copy / TAGS["images"][R_KEYS[0]]["dockerfile"]
    dockerfile.write_text(dockerfile.read_text().replace("ARG WITH_R=true", "ARG WITH_R=false"))
    problems = imagecheck.consistency_problems(repo_copy)
    assert any("kernel 'ir'" in problem and "WITH_R" in problem for problem in problems), problems


def test_a_stale_tag_in_the_helm_values_is_reported_with_the_current_reference(repo_copy):
    generated = repo_copy / "helm-values" / "generated" / "catalog.yaml"
    if not generated.is_file():
        pytest.skip("helm-values/generated/catalog.yaml is not there yet")
    generated.write_text(generated.read_text().replace(f"tag: {TAGS['tag']}", "tag: 2020.1.1"))
    problems = imagecheck.consistency_problems(repo_copy)
    stale = [p for p in problems if p.startswith("helm-values/generated/catalog.yaml") and "2020.1.1" in p]
    assert stale, problems
    assert any(repr(images.image_ref("python", repo_copy / images.TAGS_IN_CHECKOUT)) in p for p in stale), stale
    assert any("mlopshub helm generate" in problem for problem in problems), problems


def test_a_stale_hub_image_in_jupyterhub_values_is_reported(repo_copy):
    values = repo_copy / "helm-values" / "jupyterhub.yaml"
    if not values.is_file():
        pytest.skip("helm-values/jupyterhub.yaml is not there yet")
    values.write_text(values.read_text().replace(f'tag: "{TAGS["tag"]}"', 'tag: "2020.1.1"', 1))
    problems = imagecheck.consistency_problems(repo_copy)
    assert any(p.startswith("helm-values/jupyterhub.yaml: hub.image") for p in problems), problems


def test_missing_helm_values_and_profiles_are_skipped(repo_copy):
    shutil.rmtree(repo_copy / "helm-values")
    shutil.rmtree(repo_copy / "profiles")
    assert imagecheck.consistency_problems(repo_copy) == []


def test_fix_updates_the_dockerfile_defaults_after_a_manifest_edit(repo_copy, capsys):
    manifest = repo_copy / "environment.yml"
    manifest.write_text(manifest.read_text() + "# an edit\n")
    assert imagecheck.main([str(repo_copy), "--fix"]) == 0
    assert imagecheck.consistency_problems(repo_copy) == []
    assert "images/r-gpu/Dockerfile" in capsys.readouterr().out


def test_fix_after_a_tag_bump_leaves_only_the_helm_values_to_regenerate(repo_copy):
    tags_file = repo_copy / images.TAGS_IN_CHECKOUT
    tags_file.write_text(tags_file.read_text().replace(f'tag: "{TAGS["tag"]}"', 'tag: "2099.1.1"'))
    assert imagecheck.main([str(repo_copy), "--fix"]) == 1
    problems = imagecheck.consistency_problems(repo_copy)
    assert problems and all(problem.startswith("helm-values/") for problem in problems), problems
    assert imagecheck.dockerfile_args(repo_copy / "images" / "python-gpu" / "Dockerfile")["MLOPSHUB_TAG"] == "2099.1.1"


# --- manifest_conflicts -------------------------------------------------------------


def write_manifest(tmp_path: Path, conda: list[str], pip: list[str]) -> Path:
    path = tmp_path / "environment.yml"
    path.write_text(yaml.safe_dump({"name": "t", "dependencies": [*conda, "pip", {"pip": pip}]}))
    return path


def test_rpy2_3_6_with_r_4_2_is_reported_naming_rpy2(tmp_path):
    manifest = write_manifest(tmp_path, ["python=3.11", "r-base=4.2"], ["rpy2==3.6.1"])
    (problem,) = imagecheck.manifest_conflicts(manifest)
    assert "rpy2" in problem
    assert "rpy2 3.6 needs R >= 4.3; pin rpy2<3.6 for r-base=4.2" in problem


@pytest.mark.parametrize("rpy2", ["rpy2", "rpy2>=3.5"])
def test_an_unpinned_rpy2_with_r_4_2_is_reported_because_pip_would_take_3_6(tmp_path, rpy2):
    manifest = write_manifest(tmp_path, ["r-base=4.2"], [rpy2])
    assert len(imagecheck.manifest_conflicts(manifest)) == 1


@pytest.mark.parametrize(
    ("conda", "pip"),
    [
        (["r-base=4.2"], ["rpy2<3.6"]),
        (["r-base=4.2"], ["rpy2==3.5.17"]),
        (["r-base=4.3"], ["rpy2==3.6.1"]),
        (["r-base"], ["rpy2==3.6.1"]),  # conda may choose R 4.3 or later
        (["r-base>=4.3"], ["rpy2"]),
        (["python=3.11"], ["mlflow==3.17.2"]),
        (["python=3.9"], []),  # no mlflow: nothing to conflict with
    ],
)
def test_compatible_pins_are_not_reported(tmp_path, conda, pip):
    assert imagecheck.manifest_conflicts(write_manifest(tmp_path, conda, pip)) == []


def test_a_python_older_than_mlflow_supports_is_reported_naming_mlflow(tmp_path):
    manifest = write_manifest(tmp_path, ["python=3.9"], ["mlflow==3.17.2"])
    (problem,) = imagecheck.manifest_conflicts(manifest)
    assert "mlflow" in problem and "python" in problem and "3.10" in problem


def test_a_conflicting_manifest_is_a_consistency_problem(repo_copy):
    manifest = repo_copy / "environment.yml"
    manifest.write_text(write_manifest(repo_copy, ["r-base=4.2"], ["rpy2==3.6.1"]).read_text())
    assert any("rpy2" in problem for problem in imagecheck.consistency_problems(repo_copy))


def test_the_repository_manifest_has_no_known_conflict():
    assert imagecheck.manifest_conflicts(REPO / "environment.yml") == []


def test_a_new_conflict_rule_is_one_line(tmp_path, monkeypatch):
    rule = imagecheck.Conflict("pandas", ">=3", "python", "<3.11", "pandas 3 needs Python >= 3.11")
    monkeypatch.setattr(imagecheck, "CONFLICTS", (*imagecheck.CONFLICTS, rule))
    assert imagecheck.manifest_conflicts(write_manifest(tmp_path, ["python=3.10"], ["pandas==3.1.1"]))


# --- Dockerfile reading -----------------------------------------------------------


def test_dockerfile_labels_resolve_build_argument_defaults(tmp_path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        "FROM scratch\nARG V=1.2\nARG NODEFAULT\n"
        'LABEL a="${V}" \\\n      "b c"=plain d=$NODEFAULT\nLABEL legacy value with spaces\nLABEL a=last\n'
    )
    assert imagecheck.dockerfile_labels(dockerfile) == {
        "a": "last",
        "b c": "plain",
        "d": "$NODEFAULT",
        "legacy": "value with spaces",
    }


def test_manifest_sha256_is_what_sha256sum_prints(tmp_path):
    path = tmp_path / "environment.yml"
    path.write_bytes(b"abc")
    assert imagecheck.manifest_sha256(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


# --- images/workspace_manifest.py: what an image installs ----------------------------


def test_python_images_get_the_manifest_without_its_r_part():
    module = load_workspace_manifest()
    manifest = yaml.safe_load((REPO / "environment.yml").read_text())
    selected = module.without_r(manifest)
    conda = [entry for entry in selected["dependencies"] if isinstance(entry, str)]
    pip = next(entry["pip"] for entry in selected["dependencies"] if isinstance(entry, dict))
    assert not [entry for entry in conda if entry.startswith("r-")]
    assert not [line for line in pip if line.startswith("rpy2")]
    original_pip = next(entry["pip"] for entry in manifest["dependencies"] if isinstance(entry, dict))
    assert pip == [line for line in original_pip if not line.startswith("rpy2")]
    assert conda == [
        entry for entry in manifest["dependencies"] if isinstance(entry, str) and not entry.startswith("r-")
    ]


def test_manifest_pins_become_pip_constraints_without_extras():
    module = load_workspace_manifest()
    manifest = {"dependencies": ["python=3.11", {"pip": ["dvc[s3]==3.67.1", "pandas==3.1.1", "-e ./x", "plain"]}]}
    assert module.pip_constraints(manifest) == ["dvc==3.67.1", "pandas==3.1.1"]


def test_workspace_manifest_cli_writes_what_the_dockerfile_installs(tmp_path):
    module = load_workspace_manifest()
    out, constraints = tmp_path / "workspace.yml", tmp_path / "constraints.txt"
    argv = [
        str(REPO / "environment.yml"),
        "--with-r",
        "true",
        "--env-out",
        str(out),
        "--constraints-out",
        str(constraints),
    ]
    assert module.main(argv) == 0
    assert yaml.safe_load(out.read_text()) == yaml.safe_load((REPO / "environment.yml").read_text())
    assert "mlflow==" in constraints.read_text()


# --- images/build.sh ----------------------------------------------------------------


def test_build_sh_builds_every_image_with_its_reference_and_build_arguments():
    result = subprocess.run(
        ["bash", str(REPO / "images" / "build.sh"), "--dry-run", "--no-check", "--push"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    commands = [line.strip() for line in result.stdout.splitlines()]
    refs = images.all_refs(images.TAGS_FILE)
    sha = imagecheck.manifest_sha256(REPO / "environment.yml")
    builds = [line for line in commands if line.startswith("docker build")]
    assert len(builds) == len(refs)
    for key, ref in refs.items():
        (build,) = [line for line in builds if f"-t {ref} " in line]
        assert build.endswith(f"-f {TAGS['images'][key]['dockerfile']} .")
        assert f"={TAGS['tag']}" in build
        if key in WORKSPACE_KEYS:
            assert f"--build-arg MLOPSHUB_TAG={TAGS['tag']}" in build
            assert f"--build-arg MLOPSHUB_ENVIRONMENT_SHA256={sha}" in build
    pushes = [line for line in commands if line.startswith("docker push")]
    assert pushes == [f"docker push {ref}" for ref in refs.values()]
    assert commands.index(pushes[0]) > commands.index(builds[-1]), "a push started before every build finished"


def test_build_sh_refuses_an_unknown_image_key():
    result = subprocess.run(
        ["bash", str(REPO / "images" / "build.sh"), "--dry-run", "--no-check", "pyhton"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "pyhton" in result.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_build_sh_is_shellcheck_clean():
    result = subprocess.run(["shellcheck", str(REPO / "images" / "build.sh")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


# --- docs/workspaces.md -------------------------------------------------------------


def test_the_workspaces_page_lists_every_pin_of_the_manifest():
    manifest = yaml.safe_load((REPO / "environment.yml").read_text())
    pins = [entry for entry in manifest["dependencies"] if isinstance(entry, str) and entry != "pip"]
    pins += next(entry["pip"] for entry in manifest["dependencies"] if isinstance(entry, dict))
    page = (REPO / "docs" / "workspaces.md").read_text()
    missing = [pin for pin in pins if f"`{pin}`" not in page]
    assert missing == [], "docs/workspaces.md does not list these pins of environment.yml"


def test_the_workspaces_page_names_the_gpu_extras():
    page = (REPO / "docs" / "workspaces.md").read_text()
    extras = [line.strip() for line in (REPO / "images" / "gpu-extras.txt").read_text().splitlines()]
    assert all(f"`{line}`" in page for line in extras if line and not line.startswith(("#", "-")))
