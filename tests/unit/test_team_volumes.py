"""Team volumes: every PVC a user pod mounts is created by the install (`mlopshub helm generate`)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from mlopshub import catalog, helm, kubernetes

REPO = Path(__file__).resolve().parents[2]
CATALOG = catalog.load(REPO / "profiles")
GENERATED = REPO / "helm-values" / "generated" / "team-volumes.yaml"
ALLOWED = [(team, slug) for team, spec in CATALOG.teams.items() for slug in spec.profiles]


def render(team: str, slug: str) -> list[dict]:
    # A thread of its own: another test's browser may hold this thread's event loop.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, kubernetes.render(CATALOG, team, slug, "alice", {})).result()


def generated_claims() -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in yaml.safe_load_all(GENERATED.read_text()) if doc}


def test_generated_team_volumes_are_current():
    assert GENERATED.read_text() == helm.render_team_volumes(), (
        "helm-values/generated/team-volumes.yaml is stale: run `mlopshub helm generate`"
    )


@pytest.mark.parametrize(("team", "slug"), ALLOWED)
def test_every_claim_a_user_pod_mounts_is_created_by_kubespawner_or_the_install(team, slug):
    pod, home = render(team, slug)
    mounted = {v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"] if "persistentVolumeClaim" in v}
    created_by_kubespawner = {home["metadata"]["name"]}
    missing = mounted - created_by_kubespawner - set(generated_claims())
    assert missing == set(), f"a {slug} pod of {team} mounts PVCs nobody creates: {sorted(missing)}"
    assert f"team-{team}" in mounted


def test_team_volumes_are_read_write_many_on_the_sites_storage_class():
    settings = yaml.safe_load((REPO / "helm-values" / "platform" / "team-volumes.yaml").read_text())
    claims = generated_claims()
    assert set(claims) == {f"team-{team}" for team in CATALOG.teams}
    for claim in claims.values():
        assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
        assert claim["spec"]["storageClassName"] == settings["storageClassName"]
        assert claim["spec"]["resources"]["requests"]["storage"] == settings["size"]
        kubernetes_validate.validate(claim, "1.33", strict=True)


def test_a_new_team_gets_its_volume_from_helm_generate(tmp_path):
    for name in ("profiles.yaml", "teams.yaml"):
        (tmp_path / name).write_text((REPO / "profiles" / name).read_text())
    teams = tmp_path / "teams.yaml"
    teams.write_text(
        teams.read_text().replace(
            "teams:\n", "teams:\n  fraud:\n    display_name: Fraud\n    profiles: [python-cpu]\n", 1
        )
    )
    out = tmp_path / "generated"
    helm.write_generated(out, tmp_path)
    names = [doc["metadata"]["name"] for doc in yaml.safe_load_all((out / "team-volumes.yaml").read_text()) if doc]
    assert "team-fraud" in names


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("size: 100Gi\n", "storageClassName None"),
        ("storageClassName: Fast_NFS\nsize: 100Gi\n", "storageClassName 'Fast_NFS'"),
        ("storageClassName: nfs\nsize: lots\n", "size 'lots'"),
        ("storageClassName: nfs\nsize: 1Gi\naccessMode: ReadWriteOnce\n", "unknown key(s) accessMode"),
    ],
)
def test_bad_team_volume_settings_are_refused_naming_file_and_key(tmp_path, text, named):
    settings = tmp_path / "team-volumes.yaml"
    settings.write_text(text)
    with pytest.raises(ValueError) as refused:
        helm.render_team_volumes(settings_file=settings)
    assert str(settings) in str(refused.value)
    assert named in str(refused.value)
